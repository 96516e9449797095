#pragma once
// Where a model comes from when it is processed one decoder layer at a time: a checkpoint on disk,
// or the layers an earlier pipeline stage left in its work folder (pipeline/stage_output.h).
#include <ATen/ATen.h>

#include <string>

#include "llmpress/model/transformer.h"

namespace llmpress {

class Checkpoint;

class LayerSource {
 public:
  virtual ~LayerSource() = default;
  virtual const ModelConfig& config() const = 0;
  // Embeddings, final norm and head; `layers` sized to the model but empty.
  virtual Transformer load_shell(const at::Device& device) const = 0;
  virtual DecoderLayer load_layer(int64_t index, const at::Device& device) const = 0;
  // Names what the layers are, so a resumed job can tell whether its work folder belongs to it.
  virtual std::string identity() const = 0;

  // Every layer (the whole model resident).
  Transformer load(const at::Device& device) const;
};

// A checkpoint's layers as they are stored: ggml blocks stay ggml blocks (GgmlWeight), GPTQ
// packs become integer grids (QuantizedWeight), factor pairs become LowRankWeight.
class CheckpointSource : public LayerSource {
 public:
  explicit CheckpointSource(const Checkpoint& checkpoint) : checkpoint_(checkpoint) {}
  const ModelConfig& config() const override;
  Transformer load_shell(const at::Device& device) const override { return Transformer::load_shell(checkpoint_, device); }
  DecoderLayer load_layer(int64_t index, const at::Device& device) const override {
    return Transformer::load_layer(checkpoint_, index, device);
  }
  std::string identity() const override;
  const Checkpoint& checkpoint() const { return checkpoint_; }

 private:
  const Checkpoint& checkpoint_;
};

// A model held in memory (a trained student): its layers as they are, shared, not copied.
class ResidentSource : public LayerSource {
 public:
  explicit ResidentSource(const Transformer& model) : model_(model) {}
  const ModelConfig& config() const override { return model_.config; }
  Transformer load_shell(const at::Device& device) const override;
  DecoderLayer load_layer(int64_t index, const at::Device& device) const override;
  std::string identity() const override { return "a model in memory"; }

 private:
  const Transformer& model_;
};

}  // namespace llmpress

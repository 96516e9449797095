#pragma once
// The model a finished pipeline stage left in its work folder: its decoder layers as layer files
// (layer-I.bin, any weight kinds), its config (structured stages change it) and the embeddings,
// final norm and head of the pipeline's input (no stage changes those). The next stage reads it
// as its LayerSource, one layer at a time.
#include <string>

#include "llmpress/model/layer_source.h"

namespace llmpress {

class StageOutput : public LayerSource {
 public:
  // `identity`: what made these layers (the stage's job), for the next stage's resume check.
  StageOutput(const Checkpoint& origin, ModelConfig config, std::string dir, std::string identity);
  const ModelConfig& config() const override { return config_; }
  Transformer load_shell(const at::Device& device) const override;
  DecoderLayer load_layer(int64_t index, const at::Device& device) const override;
  std::string identity() const override { return identity_; }

 private:
  const Checkpoint& origin_;
  ModelConfig config_;
  std::string dir_, identity_;
};

// Throws Error naming `where` when a layer's tensors do not have the shapes `config` needs.
void check_layer_shapes(const DecoderLayer& layer, const ModelConfig& config, const std::string& where);

}  // namespace llmpress

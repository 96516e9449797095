#pragma once
// The model a finished pipeline stage left in its work folder: its decoder layers as layer files
// (layer-I.bin, any weight kinds), its config (structured stages change it) and the embeddings,
// final norm and head: the pipeline input's, or those a training stage left in its shell file. The
// next stage reads it as its LayerSource, one layer at a time.
#include <string>

#include "llmpress/model/layer_source.h"

namespace llmpress {

class StageOutput : public LayerSource {
 public:
  // `identity`: what made these layers (the stage's job), for the next stage's resume check;
  // `shell_file`: the trained embeddings, norm and head (empty: the origin's).
  StageOutput(const Checkpoint& origin, ModelConfig config, std::string dir, std::string identity,
              std::string shell_file = "");
  const ModelConfig& config() const override { return config_; }
  Transformer load_shell(const at::Device& device) const override;
  DecoderLayer load_layer(int64_t index, const at::Device& device) const override;
  std::string identity() const override { return identity_; }

 private:
  const Checkpoint& origin_;
  ModelConfig config_;
  std::string dir_, identity_, shell_file_;
};

// The shell file of a training stage: embed_tokens, norm and (untied) lm_head, float32.
std::string shell_file_path(const std::string& dir);
void save_shell_file(const std::string& path, const Transformer& model);

// Throws Error naming `where` when a layer's tensors do not have the shapes `config` needs.
void check_layer_shapes(const DecoderLayer& layer, const ModelConfig& config, const std::string& where);

}  // namespace llmpress

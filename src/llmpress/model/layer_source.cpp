#include "llmpress/model/layer_source.h"

#include "llmpress/io/checkpoint.h"

namespace llmpress {

Transformer LayerSource::load(const at::Device& device) const {
  Transformer model = load_shell(device);
  for (int64_t i = 0; i < model.config.num_layers; ++i) model.layers[size_t(i)] = load_layer(i, device);
  return model;
}

const ModelConfig& CheckpointSource::config() const { return checkpoint_.config; }

std::string CheckpointSource::identity() const { return checkpoint_.path; }

}  // namespace llmpress

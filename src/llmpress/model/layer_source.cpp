#include "llmpress/model/layer_source.h"

#include "llmpress/core/error.h"
#include "llmpress/io/checkpoint.h"

namespace llmpress {

Transformer LayerSource::load(const at::Device& device) const {
  Transformer model = load_shell(device);
  for (int64_t i = 0; i < model.config.num_layers; ++i) model.layers[size_t(i)] = load_layer(i, device);
  return model;
}

const ModelConfig& CheckpointSource::config() const { return checkpoint_.config; }

std::string CheckpointSource::identity() const { return checkpoint_.path; }

Transformer ResidentSource::load_shell(const at::Device& device) const {
  if (device != model_.device()) throw Error("a model in memory is on " + model_.device().str() + ", not " + device.str());
  Transformer shell = model_;
  shell.layers.assign(model_.layers.size(), DecoderLayer{});
  return shell;
}

DecoderLayer ResidentSource::load_layer(int64_t index, const at::Device& device) const {
  if (device != model_.device()) throw Error("a model in memory is on " + model_.device().str() + ", not " + device.str());
  return model_.layers.at(size_t(index));
}

}  // namespace llmpress

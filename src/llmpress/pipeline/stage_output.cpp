#include "llmpress/pipeline/stage_output.h"

#include "llmpress/calib/engine.h"
#include "llmpress/core/error.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/model/layer_file.h"

namespace llmpress {

StageOutput::StageOutput(const Checkpoint& origin, ModelConfig config, std::string dir, std::string identity)
    : origin_(origin), config_(std::move(config)), dir_(std::move(dir)), identity_(std::move(identity)) {}

Transformer StageOutput::load_shell(const at::Device& device) const {
  Transformer shell = Transformer::load_shell(origin_, device);
  shell.config = config_;
  shell.rope = Rope(config_, device);
  shell.layers.clear();
  shell.layers.resize(size_t(config_.num_layers));
  return shell;
}

DecoderLayer StageOutput::load_layer(int64_t index, const at::Device& device) const {
  const std::string path = engine_layer_file(dir_, index);
  DecoderLayer layer = load_layer_file(path, device);
  check_layer_shapes(layer, config_, path);
  return layer;
}

void check_layer_shapes(const DecoderLayer& layer, const ModelConfig& config, const std::string& where) {
  const auto expect = [&](const at::Tensor& t, const std::vector<int64_t>& shape, const std::string& name) {
    if (!t.defined() || t.sizes().vec() != shape) throw file_error(where, name + " does not have the shape the model needs");
  };
  expect(layer.input_norm, {config.hidden_size}, "input_layernorm");
  expect(layer.post_attention_norm, {config.hidden_size}, "post_attention_layernorm");
  for (const std::string& name : DecoderLayer::linear_names()) {
    const auto [out, in] = linear_shape(config, name);
    const Linear& linear = layer.linear(name);
    if (!linear.weight || linear.weight->out_features() != out || linear.weight->in_features() != in)
      throw file_error(where, name + " does not have the shape the model needs");
    if (linear.bias.defined()) expect(linear.bias, {out}, name + ".bias");
  }
}

}  // namespace llmpress

#include "llmpress/pipeline/stage_output.h"

#include "llmpress/calib/engine.h"
#include "llmpress/core/error.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/io/tensor_file.h"
#include "llmpress/model/layer_file.h"
#include "llmpress/model/weight_kinds.h"

namespace llmpress {

StageOutput::StageOutput(const Checkpoint& origin, ModelConfig config, std::string dir, std::string identity,
                         std::string shell_file)
    : origin_(origin),
      config_(std::move(config)),
      dir_(std::move(dir)),
      identity_(std::move(identity)),
      shell_file_(std::move(shell_file)) {}

std::string shell_file_path(const std::string& dir) { return dir + "/shell.bin"; }

void save_shell_file(const std::string& path, const Transformer& model) {
  TensorMap tensors = {{"embed_tokens", model.embed_tokens.detach()}, {"norm", model.norm.detach()}};
  nlohmann::json metadata = nlohmann::json::object();
  if (!model.config.tie_word_embeddings) {  // the head as the kind it is (a trained Q6_K head stays Q6_K)
    const WeightState head = model.lm_head.weight->save();
    for (const auto& [name, t] : head.tensors) tensors["lm_head." + name] = t.detach();
    metadata["lm_head"] = {{"kind", head.kind}, {"meta", head.meta}};
  }
  save_tensor_file(path, tensors, metadata);
}

Transformer StageOutput::load_shell(const at::Device& device) const {
  // The origin's embeddings and head are read only when no training stage replaced them.
  Transformer shell = shell_file_.empty() ? Transformer::load_shell(origin_, device) : Transformer{};
  shell.config = config_;
  shell.rope = Rope(config_, device);
  shell.layers.clear();
  shell.layers.resize(size_t(config_.num_layers));
  if (shell_file_.empty()) return shell;
  nlohmann::json metadata;
  TensorMap trained = load_tensor_file(shell_file_, device, &metadata);
  const std::vector<int64_t> matrix = {config_.vocab_size, config_.hidden_size};
  const auto take = [&](const char* name, const std::vector<int64_t>& shape) {
    const auto it = trained.find(name);
    if (it == trained.end() || it->second.sizes().vec() != shape || it->second.scalar_type() != at::kFloat)
      throw file_error(shell_file_, std::string(name) + " is missing or does not have the shape the model needs");
    return it->second;
  };
  shell.embed_tokens = take("embed_tokens", matrix);
  shell.norm = take("norm", {config_.hidden_size});
  if (config_.tie_word_embeddings) {
    shell.lm_head.weight = std::make_shared<DenseWeight>(shell.embed_tokens);
    return shell;
  }
  if (!metadata.contains("lm_head") || !metadata["lm_head"].is_object())
    throw file_error(shell_file_, "has no lm_head entry");
  try {
    WeightState head{metadata["lm_head"].at("kind").get<std::string>(), metadata["lm_head"].at("meta"), {}};
    const std::string prefix = "lm_head.";
    for (const auto& [name, t] : trained)  // restored on the CPU, where ggml blocks live; a dense head moves
      if (name.compare(0, prefix.size(), prefix) == 0) head.tensors[name.substr(prefix.size())] = t.to(at::kCPU);
    shell.lm_head.weight = restore_weight(head);
    if (head.kind == "dense") shell.lm_head.weight = std::make_shared<DenseWeight>(shell.lm_head.weight->dense().to(device));
  } catch (const std::exception& e) {
    throw file_error(shell_file_, std::string("lm_head: ") + e.what());
  }
  if (shell.lm_head.weight->out_features() != config_.vocab_size || shell.lm_head.weight->in_features() != config_.hidden_size)
    throw file_error(shell_file_, "lm_head does not have the shape the model needs");
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

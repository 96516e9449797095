#include "llmpress/train/parameters.h"

#include <regex>

#include "llmpress/core/error.h"

namespace llmpress {

namespace {

std::string layer_prefix(size_t index) { return "model.layers." + std::to_string(index) + "."; }

void add_linear(const std::string& name, const Linear& linear, std::vector<Parameter>& out) {
  for (const TrainableTensor& t : linear.weight->trainable()) out.push_back({name + ".weight" + t.suffix, t.tensor, t.removed, t.decay});
  if (linear.bias.defined()) out.push_back({name + ".bias", linear.bias, {}, false});
}

std::shared_ptr<LinearWeight> clone_weight(const LinearWeight& weight) {
  WeightState state = weight.save();
  for (auto& [name, tensor] : state.tensors) tensor = tensor.detach().clone();
  return restore_weight(state);
}

Linear clone_linear(const Linear& linear) {
  Linear copy;
  copy.weight = clone_weight(*linear.weight);
  if (linear.bias.defined()) copy.bias = linear.bias.detach().clone();
  return copy;
}

DecoderLayer clone_layer(const DecoderLayer& layer) {
  DecoderLayer copy;
  copy.input_norm = layer.input_norm.detach().clone();
  copy.post_attention_norm = layer.post_attention_norm.detach().clone();
  for (const std::string& name : DecoderLayer::linear_names()) copy.linear(name) = clone_linear(layer.linear(name));
  copy.activation_quant = layer.activation_quant;
  return copy;
}

bool head_is_embedding(const Transformer& model) {
  const auto* dense = dynamic_cast<const DenseWeight*>(model.lm_head.weight.get());
  return dense && dense->dense().is_same(model.embed_tokens);
}

}  // namespace

std::vector<Parameter> model_parameters(const Transformer& model) {
  std::vector<Parameter> out;
  out.push_back({"model.embed_tokens.weight", model.embed_tokens, {}, false});
  for (size_t i = 0; i < model.layers.size(); ++i) {
    const DecoderLayer& layer = model.layers[i];
    const std::string prefix = layer_prefix(i);
    out.push_back({prefix + "input_layernorm.weight", layer.input_norm, {}, false});
    out.push_back({prefix + "post_attention_layernorm.weight", layer.post_attention_norm, {}, false});
    for (const std::string& name : DecoderLayer::linear_names()) add_linear(prefix + name, layer.linear(name), out);
  }
  out.push_back({"model.norm.weight", model.norm, {}, false});
  if (!head_is_embedding(model)) add_linear("lm_head", model.lm_head, out);
  return out;
}

std::vector<Parameter> select_trainable(const Transformer& model, const std::string& pattern) {
  std::regex re;
  try {
    re = std::regex(pattern.empty() ? std::string(".*") : pattern);
  } catch (const std::regex_error& e) {
    throw Error("--trainable '" + pattern + "' is not a valid regular expression (" + e.what() + ")");
  }
  std::vector<Parameter> chosen;
  for (Parameter& p : model_parameters(model)) {
    const bool train = std::regex_search(p.name, re);
    p.tensor.requires_grad_(train);
    if (train) chosen.push_back(std::move(p));
  }
  if (chosen.empty())
    throw Error("--trainable '" + pattern + "' matches no trainable tensor (names look like "
                "model.layers.0.self_attn.q_proj.weight; quantized layers are frozen)");
  return chosen;
}

Transformer deep_copy(const Transformer& model) {
  Transformer copy;
  copy.config = model.config;
  copy.rope = model.rope;  // constant tables, never trained
  copy.embed_tokens = model.embed_tokens.detach().clone();
  copy.norm = model.norm.detach().clone();
  copy.lm_head = head_is_embedding(model) ? Linear{std::make_shared<DenseWeight>(copy.embed_tokens), {}}
                                          : clone_linear(model.lm_head);
  for (const DecoderLayer& layer : model.layers) copy.layers.push_back(clone_layer(layer));
  return copy;
}

Transformer copy_layers(const Transformer& model, const std::vector<int64_t>& keep) {
  if (keep.empty()) throw Error("a student needs at least one decoder layer");
  Transformer copy = deep_copy(model);
  std::vector<DecoderLayer> layers;
  for (int64_t index : keep) {
    if (index < 0 || index >= int64_t(model.layers.size()))
      throw Error("layer " + std::to_string(index) + " does not exist (the teacher has " +
                  std::to_string(model.layers.size()) + " layers, 0 .. " + std::to_string(model.layers.size() - 1) + ")");
    layers.push_back(clone_layer(model.layers[size_t(index)]));
  }
  copy.layers = std::move(layers);
  copy.config.num_layers = int64_t(copy.layers.size());
  return copy;
}

int64_t hold_weights_in(Transformer& model, at::ScalarType dtype) {
  int64_t saved = 0;
  const auto cast = [&](const at::Tensor& t) {
    saved += int64_t(t.numel()) * (int64_t(t.element_size()) - int64_t(c10::elementSize(dtype)));
    return t.detach().to(dtype);
  };
  const bool tied = head_is_embedding(model);
  const auto cast_linear = [&](Linear& linear) {
    if (linear.weight && linear.weight->kind() == "dense") linear.weight = std::make_shared<DenseWeight>(cast(linear.weight->dense()));
  };
  for (DecoderLayer& layer : model.layers)
    for (const std::string& name : DecoderLayer::linear_names()) cast_linear(layer.linear(name));
  model.embed_tokens = cast(model.embed_tokens);
  if (tied) model.lm_head.weight = std::make_shared<DenseWeight>(model.embed_tokens);
  else cast_linear(model.lm_head);
  return saved;
}

Transformer random_model(const ModelConfig& config, double initializer_range, uint64_t seed) {
  config.validate("the model configuration");
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const auto normal = [&](std::vector<int64_t> shape) { return at::normal(0.0, initializer_range, shape, gen); };
  Transformer model;
  model.config = config;
  model.embed_tokens = normal({config.vocab_size, config.hidden_size});
  model.norm = at::ones({config.hidden_size});
  model.lm_head.weight = config.tie_word_embeddings ? std::make_shared<DenseWeight>(model.embed_tokens)
                                                    : std::make_shared<DenseWeight>(normal({config.vocab_size, config.hidden_size}));
  for (int64_t i = 0; i < config.num_layers; ++i) {
    DecoderLayer layer;
    layer.input_norm = at::ones({config.hidden_size});
    layer.post_attention_norm = at::ones({config.hidden_size});
    for (const std::string& name : DecoderLayer::linear_names()) {
      const auto [out, in] = linear_shape(config, name);
      layer.linear(name).weight = std::make_shared<DenseWeight>(normal({out, in}));
      if (config.attention_bias && name.find("self_attn.") == 0 && name != "self_attn.o_proj")
        layer.linear(name).bias = at::zeros({out});
    }
    model.layers.push_back(std::move(layer));
  }
  model.rope = Rope(config, at::kCPU);
  return model;
}

}  // namespace llmpress

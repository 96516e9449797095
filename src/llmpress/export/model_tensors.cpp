#include "llmpress/export/model_tensors.h"

#include <sstream>

#include "llmpress/core/error.h"

namespace llmpress {
namespace {

std::string shape_text(at::IntArrayRef shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

int64_t export_head_dim(const ModelConfig& config) {
  if (config.head_dim > 0) return config.head_dim;
  if (config.num_heads <= 0) throw Error("model config: num_attention_heads must be positive");
  return config.hidden_size / config.num_heads;
}

std::map<std::string, NamedTensor> check_export_tensors(const ModelConfig& config,
                                                        const std::vector<NamedTensor>& tensors,
                                                        const std::string& target) {
  const int64_t H = config.hidden_size, I = config.intermediate_size, V = config.vocab_size;
  const int64_t D = export_head_dim(config);
  const int64_t kv_heads = config.num_kv_heads > 0 ? config.num_kv_heads : config.num_heads;
  if (H <= 0 || I <= 0 || V <= 0 || config.num_layers <= 0 || config.num_heads <= 0)
    throw Error(target + ": model config has non-positive sizes");
  const bool qkv_bias = config.attention_bias || config.architecture == "qwen2";

  std::map<std::string, std::vector<int64_t>> expected;
  expected["model.embed_tokens.weight"] = {V, H};
  for (int64_t l = 0; l < config.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    expected[p + "input_layernorm.weight"] = {H};
    expected[p + "self_attn.q_proj.weight"] = {config.num_heads * D, H};
    expected[p + "self_attn.k_proj.weight"] = {kv_heads * D, H};
    expected[p + "self_attn.v_proj.weight"] = {kv_heads * D, H};
    expected[p + "self_attn.o_proj.weight"] = {H, config.num_heads * D};
    if (qkv_bias) {
      expected[p + "self_attn.q_proj.bias"] = {config.num_heads * D};
      expected[p + "self_attn.k_proj.bias"] = {kv_heads * D};
      expected[p + "self_attn.v_proj.bias"] = {kv_heads * D};
    }
    expected[p + "post_attention_layernorm.weight"] = {H};
    expected[p + "mlp.gate_proj.weight"] = {I, H};
    expected[p + "mlp.up_proj.weight"] = {I, H};
    expected[p + "mlp.down_proj.weight"] = {H, I};
  }
  expected["model.norm.weight"] = {H};
  if (!config.tie_word_embeddings) expected["lm_head.weight"] = {V, H};

  std::map<std::string, NamedTensor> found;
  std::string problems;
  for (const NamedTensor& t : tensors) {
    if (ends_with(t.name, "rotary_emb.inv_freq")) continue;
    if (t.name == "lm_head.weight" && config.tie_word_embeddings) continue;
    const auto it = expected.find(t.name);
    if (it == expected.end()) {
      problems += "; unexpected tensor " + t.name + " (the format has no place for it)";
      continue;
    }
    if (found.count(t.name)) throw Error(target + ": tensor " + t.name + " given twice");
    if (!t.tensor.defined() || !t.tensor.is_floating_point())
      throw Error(target + ": tensor " + t.name + " is not a floating-point tensor");
    if (t.tensor.sizes() != at::IntArrayRef(it->second))
      throw Error(target + ": tensor " + t.name + " has shape " + shape_text(t.tensor.sizes()) + ", config needs " +
                  shape_text(it->second));
    found[t.name] = t;
  }
  for (const auto& [name, shape] : expected)
    if (!found.count(name)) problems += "; missing tensor " + name + " " + shape_text(shape);
  if (!problems.empty()) throw Error(target + ": " + problems.substr(2));
  return found;
}

}  // namespace llmpress

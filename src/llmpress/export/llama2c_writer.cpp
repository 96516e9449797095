#include "llmpress/export/llama2c_writer.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>

#include "llmpress/core/error.h"
#include "llmpress/export/model_tensors.h"
#include "llmpress/export/rope_layout.h"
#include "llmpress/io/atomic_file.h"

namespace llmpress {
namespace {

void refuse_unexpressible(const ModelConfig& config, const std::string& target) {
  if (config.architecture != "llama")
    throw Error(target + ": llama2.c has no '" + config.architecture + "' architecture (only llama)");
  if (config.attention_bias) throw Error(target + ": llama2.c has no attention biases");
  if (export_head_dim(config) * config.num_heads != config.hidden_size)
    throw Error(target + ": llama2.c needs head_dim = hidden_size / num_heads, this model has head_dim " +
                std::to_string(export_head_dim(config)));
  if (config.rope_theta != 10000.0)
    throw Error(target + ": run.c hard-codes rope theta 10000, this model uses " + std::to_string(config.rope_theta));
  if (config.rope_scaling.type != "none")
    throw Error(target + ": llama2.c has no rope scaling ('" + config.rope_scaling.type + "')");
  const int64_t limit = std::numeric_limits<int32_t>::max();
  for (int64_t v : {config.hidden_size, config.intermediate_size, config.num_layers, config.num_heads,
                    config.vocab_size, config.max_position_embeddings})
    if (v > limit) throw Error(target + ": a size does not fit the int32 header");
}

void write_f32(AtomicFile& file, const at::Tensor& t) {
  const at::Tensor data = t.to(at::kCPU, at::kFloat).contiguous();
  file.write(data.data_ptr<float>(), size_t(data.numel()) * sizeof(float));
}

}  // namespace

void write_llama2c(const std::string& path, const ModelConfig& config, const std::vector<NamedTensor>& tensors) {
  const std::string target = "llama2.c export to " + path;
  refuse_unexpressible(config, target);
  std::map<std::string, at::Tensor> w;
  for (const auto& [name, t] : check_export_tensors(config, tensors, target)) w[name] = t.data();
  const int64_t kv_heads = config.num_kv_heads > 0 ? config.num_kv_heads : config.num_heads;
  const int64_t head_dim = export_head_dim(config);
  const auto layer = [&](int64_t l, const std::string& suffix) {
    return w.at("model.layers." + std::to_string(l) + "." + suffix);
  };

  const int32_t header[7] = {int32_t(config.hidden_size),
                             int32_t(config.intermediate_size),
                             int32_t(config.num_layers),
                             int32_t(config.num_heads),
                             int32_t(kv_heads),
                             // run.c: a negative vocab size announces a separate classifier at the end.
                             int32_t(config.tie_word_embeddings ? config.vocab_size : -config.vocab_size),
                             int32_t(config.max_position_embeddings)};
  AtomicFile file(path);
  file.write(header, sizeof(header));
  write_f32(file, w.at("model.embed_tokens.weight"));
  // Each kind of weight for all layers, then the next kind (run.c's memory_map_weights order).
  const auto all_layers = [&](const std::string& suffix, int64_t rope_heads) {
    for (int64_t l = 0; l < config.num_layers; ++l) {
      at::Tensor t = layer(l, suffix).to(at::kFloat);
      write_f32(file, rope_heads > 0 ? half_split_to_interleaved(t, rope_heads) : t);
    }
  };
  all_layers("input_layernorm.weight", 0);
  all_layers("self_attn.q_proj.weight", config.num_heads);
  all_layers("self_attn.k_proj.weight", kv_heads);
  all_layers("self_attn.v_proj.weight", 0);
  all_layers("self_attn.o_proj.weight", 0);
  all_layers("post_attention_layernorm.weight", 0);
  all_layers("mlp.gate_proj.weight", 0);
  all_layers("mlp.down_proj.weight", 0);
  all_layers("mlp.up_proj.weight", 0);
  write_f32(file, w.at("model.norm.weight"));

  // Legacy RoPE tables (run.c skips them but their size is part of the layout), computed like
  // llama2.c's precompute_freqs_cis in float32: angle = pos * theta^(-2i/head_dim).
  const at::Tensor exponents = at::arange(0, head_dim, 2, at::kLong).slice(0, 0, head_dim / 2).to(at::kFloat) / head_dim;
  const at::Tensor freqs = at::reciprocal(at::pow(10000.0, exponents));
  const at::Tensor angles = at::outer(at::arange(config.max_position_embeddings, at::kLong), freqs).to(at::kFloat);
  write_f32(file, at::cos(angles));
  write_f32(file, at::sin(angles));

  if (!config.tie_word_embeddings) write_f32(file, w.at("lm_head.weight"));
  file.commit();
}

void write_llama2c_tokenizer(const std::string& path, const Vocab& vocab) {
  if (vocab.model != "llama")
    throw Error(path + ": llama2.c tokenizers are SentencePiece-style; a '" + vocab.model + "' vocabulary cannot be written");
  const std::string space_marker = "\xe2\x96\x81";  // U+2581
  std::string body;
  uint32_t max_length = 0;
  for (size_t id = 0; id < vocab.tokens.size(); ++id) {
    std::string piece = vocab.tokens[id];
    if (int64_t(id) == vocab.bos_id) piece = "\n<s>\n";
    if (int64_t(id) == vocab.eos_id) piece = "\n</s>\n";
    for (size_t at = piece.find(space_marker); at != std::string::npos; at = piece.find(space_marker, at + 1))
      piece.replace(at, space_marker.size(), " ");
    const float score = id < vocab.scores.size() ? vocab.scores[id] : 0.0f;
    const uint32_t length = uint32_t(piece.size());
    max_length = std::max(max_length, length);
    body.append(reinterpret_cast<const char*>(&score), 4);
    body.append(reinterpret_cast<const char*>(&length), 4);
    body += piece;
  }
  write_file_atomic(path, std::string(reinterpret_cast<const char*>(&max_length), 4) + body);
}

}  // namespace llmpress

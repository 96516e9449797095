#include "llmpress/io/model_config.h"

#include <cmath>

#include "llmpress/core/error.h"

namespace llmpress {

namespace {

// Far above any real model, low enough that parameter_count() and byte counts cannot overflow int64.
constexpr int64_t kMaxDim = int64_t(1) << 22;
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = int64_t(1) << 14;

void require_range(const std::string& source, const char* field, int64_t value, int64_t max) {
  if (value <= 0) {
    throw file_error(source, std::string(field) + " is " + std::to_string(value) + "; it must be positive");
  }
  if (value > max) {
    throw file_error(source, std::string(field) + " is " + std::to_string(value) +
                                 ", which is implausibly large (limit " + std::to_string(max) + ")");
  }
}

}  // namespace

void ModelConfig::validate(const std::string& source) const {
  if (architecture != "llama" && architecture != "qwen2") {
    throw file_error(source, "architecture \"" + architecture + "\" is not supported (llama or qwen2)");
  }
  require_range(source, "vocab_size", vocab_size, kMaxDim);
  require_range(source, "hidden_size", hidden_size, kMaxDim);
  require_range(source, "intermediate_size", intermediate_size, kMaxDim);
  require_range(source, "num_layers", num_layers, kMaxLayers);
  require_range(source, "num_heads", num_heads, kMaxHeads);
  require_range(source, "num_kv_heads", num_kv_heads, kMaxHeads);
  require_range(source, "head_dim", head_dim, kMaxDim);
  require_range(source, "max_position_embeddings", max_position_embeddings, int64_t(1) << 30);
  if (num_heads * head_dim > kMaxDim) {
    throw file_error(source, "num_heads * head_dim = " + std::to_string(num_heads * head_dim) + " is implausibly large");
  }
  if (num_heads % num_kv_heads != 0) {
    throw file_error(source, "num_kv_heads (" + std::to_string(num_kv_heads) + ") does not divide num_heads (" +
                                 std::to_string(num_heads) + ")");
  }
  if (head_dim % 2 != 0) {
    throw file_error(source, "head_dim " + std::to_string(head_dim) + " is odd; RoPE needs an even head size");
  }
  if (!(rms_norm_eps > 0) || !std::isfinite(rms_norm_eps)) {
    throw file_error(source, "rms_norm_eps must be a positive number, got " + std::to_string(rms_norm_eps));
  }
  if (!(rope_theta > 0) || !std::isfinite(rope_theta)) {
    throw file_error(source, "rope_theta must be a positive number, got " + std::to_string(rope_theta));
  }
  if (rope_scaling.type != "none" && rope_scaling.type != "linear" && rope_scaling.type != "llama3") {
    throw file_error(source, "rope scaling type \"" + rope_scaling.type +
                                 "\" is not supported (none, linear or llama3)");
  }
  if (rope_scaling.type != "none" && !(rope_scaling.factor > 0 && std::isfinite(rope_scaling.factor))) {
    throw file_error(source, "rope scaling factor must be positive, got " + std::to_string(rope_scaling.factor));
  }
  if (rope_scaling.type == "llama3") {
    if (!(rope_scaling.high_freq_factor > rope_scaling.low_freq_factor) || !(rope_scaling.low_freq_factor > 0)) {
      throw file_error(source, "llama3 rope scaling needs 0 < low_freq_factor < high_freq_factor");
    }
    require_range(source, "rope_scaling.original_max_position_embeddings",
                  rope_scaling.original_max_position_embeddings, int64_t(1) << 30);
  }
}

int64_t ModelConfig::parameter_count() const {
  const int64_t q_out = num_heads * head_dim;
  const int64_t kv_out = num_kv_heads * head_dim;
  int64_t per_layer = 2 * hidden_size;                            // two RMSNorm weights
  per_layer += hidden_size * (q_out + 2 * kv_out) + q_out * hidden_size;  // q, k, v, o
  if (attention_bias) per_layer += q_out + 2 * kv_out;
  per_layer += 3 * hidden_size * intermediate_size;               // gate, up, down
  int64_t total = vocab_size * hidden_size + num_layers * per_layer + hidden_size;
  if (!tie_word_embeddings) total += vocab_size * hidden_size;
  return total;
}

}  // namespace llmpress

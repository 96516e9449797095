#pragma once
#include <cstdint>
#include <string>

namespace llmpress {

// RoPE frequency scaling (Hugging Face `rope_scaling`).
struct RopeScaling {
  std::string type = "none";  // "none", "linear", "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;                  // llama3
  double high_freq_factor = 4.0;                 // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

// Hyper-parameters of a Llama-family decoder, in Hugging Face terms.
struct ModelConfig {
  std::string architecture = "llama";  // "llama" (also Mistral, TinyLlama, SmolLM) or "qwen2"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (Qwen2)
  int64_t bos_token_id = 1;
  int64_t eos_token_id = 2;

  // Throws Error("SOURCE: <field> ...") on absurd values: non-positive sizes, heads that
  // do not divide, kv heads not dividing heads, odd head_dim, unknown rope scaling.
  void validate(const std::string& source) const;
  // Parameter count of the dense model (embeddings and head counted once when tied).
  int64_t parameter_count() const;
  // The context generation and task evaluation may fill: max_position_embeddings, 2048 when unset.
  int64_t context_length() const { return max_position_embeddings > 0 ? max_position_embeddings : 2048; }
};

}  // namespace llmpress

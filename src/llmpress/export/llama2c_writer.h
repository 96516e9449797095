#pragma once
// llama2.c legacy checkpoint (version 0, the .bin that run.c reads; formats.md 6.1).
#include <string>
#include <vector>

#include "llmpress/export/named_tensor.h"
#include "llmpress/io/model_config.h"

namespace llmpress {

// Writes all weights as float32, q/k rows back in Meta's interleaved RoPE layout, the legacy
// freq_cis tables, and a negative vocab_size plus a trailing classifier when lm_head is not tied.
// The sequence length written is config.max_position_embeddings. Throws Error for what the format
// cannot express: architectures with biases (qwen2, attention_bias), head_dim != hidden/heads,
// rope_theta other than 10000 (run.c hard-codes it), rope scaling.
void write_llama2c(const std::string& path, const ModelConfig& config, const std::vector<NamedTensor>& tensors);

}  // namespace llmpress

#pragma once
// llama2.c legacy checkpoint (version 0, the .bin that run.c reads; formats.md 6.1).
#include <string>
#include <vector>

#include "llmpress/export/named_tensor.h"
#include "llmpress/io/model_config.h"
#include "llmpress/io/vocab.h"

namespace llmpress {

// Writes all weights as float32, q/k rows back in Meta's interleaved RoPE layout, the legacy
// freq_cis tables, and a negative vocab_size plus a trailing classifier when lm_head is not tied.
// The sequence length written is config.max_position_embeddings. Throws Error for what the format
// cannot express: architectures with biases (qwen2, attention_bias), head_dim != hidden/heads,
// rope_theta other than 10000 (run.c hard-codes it), rope scaling.
void write_llama2c(const std::string& path, const ModelConfig& config, const std::vector<NamedTensor>& tensors);

// llama2.c tokenizer.bin (formats.md 6.3) from a SentencePiece-style vocabulary: "\u2581" becomes a space,
// BOS/EOS become "\n<s>\n"/"\n</s>\n" as llama2.c's export does. Byte-level BPE vocabularies are refused.
void write_llama2c_tokenizer(const std::string& path, const Vocab& vocab);

}  // namespace llmpress

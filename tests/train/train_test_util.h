#pragma once
// A tiny Llama configuration for the trainer and distillation tests (grouped-query attention, two
// layers): random models of it run a step in milliseconds.
#include <ATen/ATen.h>

#include <vector>

#include "llmpress/io/model_config.h"

namespace llmpress::test {

inline ModelConfig tiny_config(int64_t vocab, int64_t heads, int64_t kv_heads, int64_t head_dim) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.rms_norm_eps = 1e-5;
  return c;
}

// `n` token ids drawn uniformly from [0, vocab), seeded.
inline std::vector<int32_t> random_tokens(int64_t n, uint64_t seed, int64_t vocab) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const at::Tensor t = at::randint(vocab, {n}, gen, at::kLong);
  return std::vector<int32_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + n);
}

}  // namespace llmpress::test

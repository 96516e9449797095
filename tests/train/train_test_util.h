#pragma once
// A tiny Llama configuration for the trainer and distillation tests (grouped-query attention, two
// layers): random models of it run a step in milliseconds.
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

}  // namespace llmpress::test

#pragma once
// Q/K row order conversion between Hugging Face's half-split RoPE layout and Meta's interleaved
// layout (used by GGUF arch "llama" and llama2.c), formats.md 1.12.
#include <ATen/ATen.h>

namespace llmpress {

// For each of `heads` heads of D rows: interleaved row h*D + 2j + t = half-split row h*D + t*D/2 + j.
// Works on weights [heads*D, in] and biases [heads*D].
at::Tensor half_split_to_interleaved(const at::Tensor& rows, int64_t heads);

}  // namespace llmpress

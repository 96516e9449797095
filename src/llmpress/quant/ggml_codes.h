#pragma once
// Where each element's integer code lives inside a ggml block, so that a block's header (scales,
// mins) can be kept while its codes are chosen by another algorithm (format-aware GPTQ).
// In every supported type an element's value is affine in its code: value = a * code + b, with
// a and b fixed by the header. Plain C++, no torch.
#include <cstdint>

#include "llmpress/io/tensor_data.h"

namespace llmpress {

struct BlockCodeRange {
  int min_code, max_code;  // Q8_0 codes are signed (stored as int8); all others unsigned
};

// Throws Error for types without a code layout (plain floats).
BlockCodeRange block_code_range(TensorType type);
int read_block_code(TensorType type, const uint8_t* block, int element);
void write_block_code(TensorType type, uint8_t* block, int element, int code);

// The affine grid of every element of one encoded block: value(code) = scale[e] * code + offset[e],
// read off the type's own decoder at codes 0 and 1 (so it is exactly the arithmetic llama.cpp uses).
void block_affine_grid(TensorType type, const uint8_t* block, float* scale, float* offset);

}  // namespace llmpress

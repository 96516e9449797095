#pragma once
// Where each element's integer code lives inside a ggml block, so that a block's header (scales,
// mins) can be kept while its codes are chosen by another algorithm (format-aware GPTQ).
// In every supported type an element's value is affine in its code's level: value = a * level(code) + b,
// with a and b fixed by the header; the level is the code itself except in IQ4_NL / IQ4_XS, whose 16
// codes select non-uniform levels. Plain C++, no torch.
#include <cstdint>
#include <vector>

#include "llmpress/io/tensor_data.h"

namespace llmpress {

struct BlockCodeRange {
  int min_code, max_code;  // Q8_0 codes are signed (stored as int8); all others unsigned
};

// Whether `type` stores one code per element (not plain floats, not the lattice i-quants and ternary types).
bool has_block_codes(TensorType type);
// Throws Error for types without a code layout.
BlockCodeRange block_code_range(TensorType type);
int read_block_code(TensorType type, const uint8_t* block, int element);
void write_block_code(TensorType type, uint8_t* block, int element, int code);

// The level of every code, min_code..max_code in order (increasing).
std::vector<float> block_code_levels(TensorType type);
bool block_levels_uniform(TensorType type);  // level(code) == code

// The grid of every element of one encoded block: value(code) = scale[e] * level(code) + offset[e],
// read off the type's own decoder (so it is exactly the arithmetic llama.cpp uses): at codes 0 and 1
// for uniform levels, at the code of level 1 (offset 0) for IQ4_NL / IQ4_XS.
void block_affine_grid(TensorType type, const uint8_t* block, float* scale, float* offset);

}  // namespace llmpress

#pragma once
// Where the lattice i-quants (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S) keep the code of
// each group of 8 consecutive elements, so that a block's scales can be kept while its groups are
// re-coded one at a time by another algorithm (format-aware GPTQ with vector rounding). Those types
// code values 8 (or 4) at a time from a lattice grid plus signs, so there is no per-element code as
// in ggml_codes.h. Plain C++, no torch.
#include <cstdint>

#include "llmpress/io/tensor_data.h"

namespace llmpress {

constexpr int kLatticeGroupElements = 8;

bool has_lattice_codes(TensorType type);

// Re-codes group `g` (elements 8g .. 8g+7) of one encoded 256-element block: with the block's scales
// (and IQ1 deltas) as they are, picks the grid point and signs whose decoded values minimize
// sum_j weight[j] * (target[j] - value_j)^2, and stores them; every other bit of the block is unchanged.
// Weights are positive. Throws Error for other types.
void write_nearest_group(TensorType type, uint8_t* block, int g, const float* target, const float* weight);

}  // namespace llmpress

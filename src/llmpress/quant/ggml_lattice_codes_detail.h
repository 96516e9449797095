#pragma once
// Internal: the per-family halves of write_nearest_group (ggml_lattice_codes.h), one source file each;
// ggml_lattice_codes.cpp dispatches on the type. Same contract as write_nearest_group.
#include <cstdint>

#include "llmpress/io/tensor_data.h"

namespace llmpress::ggml_lattice_detail {

// IQ2_XXS, IQ2_XS, IQ2_S (ggml_lattice_codes_iq2.cpp).
void write_nearest_group_iq2(TensorType type, uint8_t* block, int g, const float* target, const float* weight);

// IQ3_XXS, IQ3_S, IQ1_S, IQ1_M (ggml_lattice_codes_iq3_iq1.cpp).
void write_nearest_group_iq3_iq1(TensorType type, uint8_t* block, int g, const float* target, const float* weight);

}  // namespace llmpress::ggml_lattice_detail

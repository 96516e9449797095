#pragma once
// ggml block quantization: encoders bit-exact with ggml's quantize_row_*_ref (no importance)
// and quantize_* with quant_weights (importance-weighted, formats.md 2.7), and decoders with
// dequantize_row_*'s exact arithmetic. Layouts in formats.md 2.2 / 2.3. Plain C++, no torch.
//
// Plain encoders take any whole number of blocks (`count`). Weighted encoders take exactly one
// row: the legacy types derive their weighting from the whole row's mean square, so the row
// boundary matters. `importance` has one value per element of the row (an imatrix column
// vector); null gives the plain encoder's bytes, as ggml does.
#include <cstdint>

namespace llmpress {

constexpr int64_t kLegacyBlockElements = 32;  // QK4_0 = QK4_1 = QK5_0 = QK5_1 = QK8_0
constexpr int64_t kSuperBlockElements = 256;  // QK_K

// 32-element blocks (ggml_legacy_blocks.cpp).
void quantize_q4_0(const float* src, int64_t count, uint8_t* dst);
void quantize_q4_1(const float* src, int64_t count, uint8_t* dst);
void quantize_q5_0(const float* src, int64_t count, uint8_t* dst);
void quantize_q5_1(const float* src, int64_t count, uint8_t* dst);
void quantize_q8_0(const float* src, int64_t count, uint8_t* dst);
void quantize_q4_0_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst);
void quantize_q4_1_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst);
void quantize_q5_0_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst);
void quantize_q5_1_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst);
void dequantize_q4_0(const uint8_t* src, int64_t count, float* dst);
void dequantize_q4_1(const uint8_t* src, int64_t count, float* dst);
void dequantize_q5_0(const uint8_t* src, int64_t count, float* dst);
void dequantize_q5_1(const uint8_t* src, int64_t count, float* dst);
void dequantize_q8_0(const uint8_t* src, int64_t count, float* dst);

// 256-element k-quant super-blocks (ggml_kquant_blocks.cpp).
void quantize_q2_k(const float* src, int64_t count, uint8_t* dst);
void quantize_q3_k(const float* src, int64_t count, uint8_t* dst);
void quantize_q4_k(const float* src, int64_t count, uint8_t* dst);
void quantize_q5_k(const float* src, int64_t count, uint8_t* dst);
void quantize_q6_k(const float* src, int64_t count, uint8_t* dst);
void quantize_q2_k_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst);
void quantize_q3_k_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst);
void quantize_q4_k_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst);
void quantize_q5_k_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst);
void quantize_q6_k_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst);
void dequantize_q2_k(const uint8_t* src, int64_t count, float* dst);
void dequantize_q3_k(const uint8_t* src, int64_t count, float* dst);
void dequantize_q4_k(const uint8_t* src, int64_t count, float* dst);
void dequantize_q5_k(const uint8_t* src, int64_t count, float* dst);
void dequantize_q6_k(const uint8_t* src, int64_t count, float* dst);

// i-quants and ternary types (grids in ggml_iquant_tables.h). IQ4_NL uses 32-element blocks, the
// others 256-element super-blocks. Encoders match ggml_quantize_chunk, which is what llama-quantize
// calls: for these types its plain path is quantize_iq*(..., quant_weights = NULL), not the
// quantize_row_*_ref functions (IQ4_NL's differs). IQ2_XXS, IQ2_XS and IQ1_S have no plain encoder:
// ggml refuses them without importance (ggml_quantize_requires_imatrix), and so do ours.
void quantize_iq4_nl(const float* src, int64_t count, uint8_t* dst);  // ggml_iquant_encode_iq4.cpp
void quantize_iq4_xs(const float* src, int64_t count, uint8_t* dst);
void quantize_iq4_nl_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst);
void quantize_iq4_xs_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst);
void quantize_iq3_xxs(const float* src, int64_t count, uint8_t* dst);  // ggml_iquant_encode_iq3.cpp
void quantize_iq3_s(const float* src, int64_t count, uint8_t* dst);
void quantize_iq3_xxs_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst);
void quantize_iq3_s_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst);
void quantize_iq2_s(const float* src, int64_t count, uint8_t* dst);  // ggml_iquant_encode_iq2.cpp
void quantize_iq2_xxs_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst);
void quantize_iq2_xs_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst);
void quantize_iq2_s_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst);
void quantize_iq1_m(const float* src, int64_t count, uint8_t* dst);  // ggml_iquant_encode_iq1.cpp
void quantize_iq1_s_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst);
void quantize_iq1_m_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst);
void quantize_tq1_0(const float* src, int64_t count, uint8_t* dst);  // ggml_ternary_blocks.cpp (no importance)
void quantize_tq2_0(const float* src, int64_t count, uint8_t* dst);
void dequantize_iq1_s(const uint8_t* src, int64_t count, float* dst);
void dequantize_iq1_m(const uint8_t* src, int64_t count, float* dst);
void dequantize_iq2_xxs(const uint8_t* src, int64_t count, float* dst);
void dequantize_iq2_xs(const uint8_t* src, int64_t count, float* dst);
void dequantize_iq2_s(const uint8_t* src, int64_t count, float* dst);
void dequantize_iq3_xxs(const uint8_t* src, int64_t count, float* dst);
void dequantize_iq3_s(const uint8_t* src, int64_t count, float* dst);
void dequantize_iq4_nl(const uint8_t* src, int64_t count, float* dst);
void dequantize_iq4_xs(const uint8_t* src, int64_t count, float* dst);
void dequantize_tq1_0(const uint8_t* src, int64_t count, float* dst);
void dequantize_tq2_0(const uint8_t* src, int64_t count, float* dst);

}  // namespace llmpress

#include "llmpress/export/ggml_quantize.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <string>

#include "llmpress/core/error.h"
#include "llmpress/core/half.h"
#include "llmpress/quant/ggml_block_bytes.h"

namespace llmpress {
namespace {

using ggml_blocks::store_u16;

void encode_f32(const float* src, int64_t count, uint8_t* dst) { std::memcpy(dst, src, size_t(count) * 4); }

void encode_f16(const float* src, int64_t count, uint8_t* dst) {
  for (int64_t i = 0; i < count; ++i) store_u16(dst + 2 * i, f32_to_f16(src[i]));
}

void encode_bf16(const float* src, int64_t count, uint8_t* dst) {
  for (int64_t i = 0; i < count; ++i) store_u16(dst + 2 * i, f32_to_bf16(src[i]));
}

const GgmlEncoding kEncodings[] = {
    {TensorType::F32, "F32", 1, 4, 0, false, encode_f32, nullptr},
    {TensorType::F16, "F16", 1, 2, 1, false, encode_f16, nullptr},
    {TensorType::BF16, "BF16", 1, 2, 32, false, encode_bf16, nullptr},
    {TensorType::Q8_0, "Q8_0", kLegacyBlockElements, 34, 7, true, quantize_q8_0, nullptr},
    {TensorType::Q4_0, "Q4_0", kLegacyBlockElements, 18, 2, true, quantize_q4_0, quantize_q4_0_weighted},
    {TensorType::Q4_1, "Q4_1", kLegacyBlockElements, 20, 3, true, quantize_q4_1, quantize_q4_1_weighted},
    {TensorType::Q5_0, "Q5_0", kLegacyBlockElements, 22, 8, true, quantize_q5_0, quantize_q5_0_weighted},
    {TensorType::Q5_1, "Q5_1", kLegacyBlockElements, 24, 9, true, quantize_q5_1, quantize_q5_1_weighted},
    // file_type for a single-type k-quant file: the mix whose default type it is (Q3_K_S, Q4_K_S, Q5_K_S).
    {TensorType::Q2_K, "Q2_K", kSuperBlockElements, 84, 10, true, quantize_q2_k, quantize_q2_k_weighted},
    {TensorType::Q3_K, "Q3_K", kSuperBlockElements, 110, 11, true, quantize_q3_k, quantize_q3_k_weighted},
    {TensorType::Q4_K, "Q4_K", kSuperBlockElements, 144, 14, true, quantize_q4_k, quantize_q4_k_weighted},
    {TensorType::Q5_K, "Q5_K", kSuperBlockElements, 176, 16, true, quantize_q5_k, quantize_q5_k_weighted},
    {TensorType::Q6_K, "Q6_K", kSuperBlockElements, 210, 18, true, quantize_q6_k, quantize_q6_k_weighted},
    // i-quants; IQ2_XXS, IQ2_XS and IQ1_S only with importance (no plain encoder), as in ggml.
    {TensorType::IQ1_S, "IQ1_S", kSuperBlockElements, 50, 24, true, nullptr, quantize_iq1_s_weighted},
    {TensorType::IQ1_M, "IQ1_M", kSuperBlockElements, 56, 31, true, quantize_iq1_m, quantize_iq1_m_weighted},
    {TensorType::IQ2_XXS, "IQ2_XXS", kSuperBlockElements, 66, 19, true, nullptr, quantize_iq2_xxs_weighted},
    {TensorType::IQ2_XS, "IQ2_XS", kSuperBlockElements, 74, 20, true, nullptr, quantize_iq2_xs_weighted},
    {TensorType::IQ2_S, "IQ2_S", kSuperBlockElements, 82, 28, true, quantize_iq2_s, quantize_iq2_s_weighted},
    {TensorType::IQ3_XXS, "IQ3_XXS", kSuperBlockElements, 98, 23, true, quantize_iq3_xxs, quantize_iq3_xxs_weighted},
    {TensorType::IQ3_S, "IQ3_S", kSuperBlockElements, 110, 26, true, quantize_iq3_s, quantize_iq3_s_weighted},
    {TensorType::IQ4_NL, "IQ4_NL", kLegacyBlockElements, 18, 25, true, quantize_iq4_nl, quantize_iq4_nl_weighted},
    {TensorType::IQ4_XS, "IQ4_XS", kSuperBlockElements, 136, 30, true, quantize_iq4_xs, quantize_iq4_xs_weighted},
    {TensorType::TQ1_0, "TQ1_0", kSuperBlockElements, 54, 36, true, quantize_tq1_0, nullptr},
    {TensorType::TQ2_0, "TQ2_0", kSuperBlockElements, 66, 37, true, quantize_tq2_0, nullptr},
};

std::string needs_importance_message(const std::string& type) {
  return type + " needs importance weights from calibration data (as llama-quantize needs an imatrix for it): "
                "quantize with calibration (--calib, method gptq, or rtn with imatrix)";
}

std::string encodable_names() {
  std::string known;
  for (const GgmlEncoding& e : kEncodings) known += std::string(known.empty() ? "" : ", ") + e.name;
  return known;
}

}  // namespace

bool ggml_needs_importance(TensorType type) { return ggml_can_encode(type) && !ggml_encoding(type).encode; }

bool ggml_can_encode(TensorType type) {
  for (const GgmlEncoding& e : kEncodings)
    if (e.type == type) return true;
  return false;
}

const GgmlEncoding& ggml_encoding(TensorType type) {
  for (const GgmlEncoding& e : kEncodings)
    if (e.type == type) return e;
  // Read-only types (i-quants, ternary) and anything else: refuse rather than write wrong bytes.
  throw Error("llmpress cannot write " + ggml_type_name(uint32_t(type)) + " tensors (it writes " + encodable_names() +
              ")");
}

TensorType ggml_type_from_name(const std::string& name) {
  std::string upper = name;
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return char(std::toupper(c)); });
  for (const GgmlEncoding& e : kEncodings)
    if (upper == e.name) return e.type;
  for (uint32_t id = 0; id < 64; ++id) {
    const TensorTypeInfo* info = ggml_type_info(id);
    if (info && upper == info->name)
      throw Error("llmpress cannot write " + upper + " tensors (it writes " + encodable_names() + ")");
  }
  throw Error("unknown tensor type '" + name + "' (supported: " + encodable_names() + ")");
}

uint64_t ggml_encoded_bytes(TensorType type, int64_t row_elements, int64_t rows) {
  const GgmlEncoding& e = ggml_encoding(type);
  if (row_elements < 0 || rows < 0 || row_elements % e.block_elements != 0)
    throw Error(std::string(e.name) + " needs rows that are a multiple of " + std::to_string(e.block_elements) +
                " elements, got " + std::to_string(row_elements));
  return uint64_t(row_elements / e.block_elements) * uint64_t(e.block_bytes) * uint64_t(rows);
}

std::vector<uint8_t> encode_rows(TensorType type, const float* src, int64_t row_elements, int64_t rows) {
  return encode_rows_weighted(type, src, row_elements, rows, nullptr);
}

std::vector<uint8_t> encode_rows_weighted(TensorType type, const float* src, int64_t row_elements, int64_t rows,
                                          const float* importance) {
  const GgmlEncoding& e = ggml_encoding(type);
  std::vector<uint8_t> out(ggml_encoded_bytes(type, row_elements, rows));
  const uint64_t row_bytes = ggml_encoded_bytes(type, row_elements, 1);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = src + r * row_elements;
    uint8_t* dst = out.data() + r * row_bytes;
    if (importance && e.encode_weighted)
      e.encode_weighted(row, row_elements, importance, dst);
    else if (e.encode)
      e.encode(row, row_elements, dst);
    else
      throw Error(needs_importance_message(e.name));
  }
  return out;
}

}  // namespace llmpress

#include "llmpress/export/ggml_quantize.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <string>

#include "llmpress/core/error.h"
#include "llmpress/core/half.h"

namespace llmpress {
namespace {

constexpr int64_t kLegacyBlock = 32;

void store_u16(uint8_t* dst, uint16_t v) {  // little-endian, alignment-free
  dst[0] = uint8_t(v & 0xff);
  dst[1] = uint8_t(v >> 8);
}

void encode_f32(const float* src, int64_t count, uint8_t* dst) { std::memcpy(dst, src, size_t(count) * 4); }

void encode_f16(const float* src, int64_t count, uint8_t* dst) {
  for (int64_t i = 0; i < count; ++i) store_u16(dst + 2 * i, f32_to_f16(src[i]));
}

void encode_bf16(const float* src, int64_t count, uint8_t* dst) {
  for (int64_t i = 0; i < count; ++i) store_u16(dst + 2 * i, f32_to_bf16(src[i]));
}

const GgmlEncoding kEncodings[] = {
    {TensorType::F32, "F32", 1, 4, 0, false, encode_f32},
    {TensorType::F16, "F16", 1, 2, 1, false, encode_f16},
    {TensorType::BF16, "BF16", 1, 2, 32, false, encode_bf16},
    {TensorType::Q8_0, "Q8_0", kLegacyBlock, 34, 7, true, quantize_q8_0},
    {TensorType::Q4_0, "Q4_0", kLegacyBlock, 18, 2, true, quantize_q4_0},
};

}  // namespace

// Q8_0: d = amax/127 in fp32, codes with the fp32 inverse and C roundf (half away from zero),
// d stored as f16 afterwards (so dequantization uses the rounded d, as in ggml).
void quantize_q8_0(const float* src, int64_t count, uint8_t* dst) {
  for (int64_t b = 0; b < count / kLegacyBlock; ++b) {
    const float* x = src + b * kLegacyBlock;
    uint8_t* block = dst + b * 34;
    float amax = 0.0f;
    for (int64_t i = 0; i < kLegacyBlock; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_u16(block, f32_to_f16(d));
    for (int64_t i = 0; i < kLegacyBlock; ++i) block[2 + i] = uint8_t(int8_t(std::roundf(x[i] * id)));
  }
}

// Q4_0: the element of largest magnitude (first on ties, sign kept) maps to code 0 via
// d = max / -8; other codes are trunc(x/d + 8.5) clamped to 15. Element j sits in the low
// nibble of byte j, element j+16 in the high nibble.
void quantize_q4_0(const float* src, int64_t count, uint8_t* dst) {
  constexpr int64_t half = kLegacyBlock / 2;
  for (int64_t b = 0; b < count / kLegacyBlock; ++b) {
    const float* x = src + b * kLegacyBlock;
    uint8_t* block = dst + b * 18;
    float amax = 0.0f, max = 0.0f;
    for (int64_t i = 0; i < kLegacyBlock; ++i) {
      if (amax < std::fabs(x[i])) {
        amax = std::fabs(x[i]);
        max = x[i];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_u16(block, f32_to_f16(d));
    for (int64_t j = 0; j < half; ++j) {
      // The int8 cast truncates toward zero; x*id + 8.5 is >= 0.5 by construction.
      const uint8_t lo = std::min<uint8_t>(15, uint8_t(int8_t(x[j] * id + 8.5f)));
      const uint8_t hi = std::min<uint8_t>(15, uint8_t(int8_t(x[j + half] * id + 8.5f)));
      block[2 + j] = uint8_t(lo | (hi << 4));
    }
  }
}

const GgmlEncoding& ggml_encoding(TensorType type) {
  for (const GgmlEncoding& e : kEncodings)
    if (e.type == type) return e;
  throw Error("no encoder for ggml type id " + std::to_string(uint32_t(type)));
}

TensorType ggml_type_from_name(const std::string& name) {
  std::string upper = name;
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return char(std::toupper(c)); });
  std::string known;
  for (const GgmlEncoding& e : kEncodings) {
    if (upper == e.name) return e.type;
    known += std::string(known.empty() ? "" : ", ") + e.name;
  }
  throw Error("unknown tensor type '" + name + "' (supported: " + known + ")");
}

uint64_t ggml_encoded_bytes(TensorType type, int64_t row_elements, int64_t rows) {
  const GgmlEncoding& e = ggml_encoding(type);
  if (row_elements < 0 || rows < 0 || row_elements % e.block_elements != 0)
    throw Error(std::string(e.name) + " needs rows that are a multiple of " + std::to_string(e.block_elements) +
                " elements, got " + std::to_string(row_elements));
  return uint64_t(row_elements / e.block_elements) * uint64_t(e.block_bytes) * uint64_t(rows);
}

std::vector<uint8_t> encode_rows(TensorType type, const float* src, int64_t row_elements, int64_t rows) {
  const GgmlEncoding& e = ggml_encoding(type);
  std::vector<uint8_t> out(ggml_encoded_bytes(type, row_elements, rows));
  const uint64_t row_bytes = ggml_encoded_bytes(type, row_elements, 1);
  for (int64_t r = 0; r < rows; ++r) e.encode(src + r * row_elements, row_elements, out.data() + r * row_bytes);
  return out;
}

}  // namespace llmpress

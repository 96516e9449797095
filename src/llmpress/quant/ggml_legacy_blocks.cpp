// 32-element blocks Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (formats.md 2.2, 2.7).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "llmpress/quant/ggml_block_bytes.h"
#include "llmpress/quant/ggml_block_search.h"
#include "llmpress/quant/ggml_blocks.h"

namespace llmpress {
namespace {

using ggml_blocks::load_f16;
using ggml_blocks::store_f16;

constexpr int kBlock = int(kLegacyBlockElements);
constexpr int kHalf = kBlock / 2;

// Element j in the low nibble of qs[j], element j+16 in the high nibble.
void pack_nibbles(const uint8_t* codes, uint8_t* qs) {
  for (int j = 0; j < kHalf; ++j) qs[j] = uint8_t((codes[j] & 0x0f) | ((codes[j + kHalf] & 0x0f) << 4));
}

// Bit e of the little-endian u32 qh is bit 4 of element e's code.
void pack_high_bits(const uint8_t* codes, uint8_t* qh) {
  uint32_t bits = 0;
  for (int e = 0; e < kBlock; ++e) bits |= uint32_t((codes[e] >> 4) & 1) << e;
  for (int b = 0; b < 4; ++b) qh[b] = uint8_t(bits >> (8 * b));
}

uint8_t nibble(const uint8_t* qs, int e) { return e < kHalf ? qs[e] & 0x0f : qs[e - kHalf] >> 4; }
uint8_t high_bit(const uint8_t* qh, int e) { return (qh[e / 8] >> (e % 8)) & 1; }

// The element of largest magnitude, sign kept (first on ties).
float signed_absmax(const float* x) {
  float amax = 0, max = 0;
  for (int i = 0; i < kBlock; ++i)
    if (amax < std::fabs(x[i])) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  return max;
}

void block_min_max(const float* x, float& min, float& max) {
  min = FLT_MAX;
  max = -FLT_MAX;
  for (int i = 0; i < kBlock; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
  }
}

// Symmetric legacy codes: the extreme element maps to code 0 via d = max / -levels_half,
// others to trunc(x/d + levels_half + 0.5) (int8 cast truncates toward zero), clamped.
void symmetric_ref_codes(const float* x, int levels_half, float& d, uint8_t* codes) {
  d = signed_absmax(x) / float(-levels_half);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const int top = 2 * levels_half - 1;
  for (int i = 0; i < kBlock; ++i)
    codes[i] = uint8_t(std::min(top, int(int8_t(x[i] * id + (float(levels_half) + 0.5f)))));
}

// The imatrix weighting of the legacy types: w = I * sqrt(sigma2 + x^2), sigma2 = row mean square.
float row_sigma2(const float* row, int64_t n) {
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += row[j] * row[j];
  return sum_x2 / float(n);
}

void block_weights(const float* x, const float* importance, float sigma2, float* w) {
  for (int j = 0; j < kBlock; ++j) w[j] = importance[j] * std::sqrt(sigma2 + x[j] * x[j]);
}

}  // namespace

void quantize_q4_0(const float* src, int64_t count, uint8_t* dst) {
  for (int64_t b = 0; b < count / kBlock; ++b) {
    uint8_t* block = dst + b * 18;
    float d;
    uint8_t codes[kBlock];
    symmetric_ref_codes(src + b * kBlock, 8, d, codes);
    store_f16(block, d);
    pack_nibbles(codes, block + 2);
  }
}

void quantize_q5_0(const float* src, int64_t count, uint8_t* dst) {
  for (int64_t b = 0; b < count / kBlock; ++b) {
    uint8_t* block = dst + b * 22;
    float d;
    uint8_t codes[kBlock];
    symmetric_ref_codes(src + b * kBlock, 16, d, codes);
    store_f16(block, d);
    pack_high_bits(codes, block + 2);
    pack_nibbles(codes, block + 6);
  }
}

// Q4_1: d = (max - min)/15, m = min, code = trunc((x - min)/d + 0.5) clamped to 15.
void quantize_q4_1(const float* src, int64_t count, uint8_t* dst) {
  for (int64_t b = 0; b < count / kBlock; ++b) {
    const float* x = src + b * kBlock;
    uint8_t* block = dst + b * 20;
    float min, max;
    block_min_max(x, min, max);
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(block, d);
    store_f16(block + 2, min);
    uint8_t codes[kBlock];
    for (int i = 0; i < kBlock; ++i) codes[i] = uint8_t(std::min(15, int(int8_t((x[i] - min) * id + 0.5f))));
    pack_nibbles(codes, block + 4);
  }
}

// Q5_1: d = (max - min)/31, code = trunc((x - min)/d + 0.5) (no clamp in ggml).
void quantize_q5_1(const float* src, int64_t count, uint8_t* dst) {
  for (int64_t b = 0; b < count / kBlock; ++b) {
    const float* x = src + b * kBlock;
    uint8_t* block = dst + b * 24;
    float min, max;
    block_min_max(x, min, max);
    const float d = (max - min) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(block, d);
    store_f16(block + 2, min);
    uint8_t codes[kBlock];
    for (int i = 0; i < kBlock; ++i) codes[i] = uint8_t((x[i] - min) * id + 0.5f);
    pack_high_bits(codes, block + 4);
    pack_nibbles(codes, block + 8);
  }
}

// Q8_0: d = amax/127 in fp32, codes with the fp32 inverse and C roundf (half away from zero).
void quantize_q8_0(const float* src, int64_t count, uint8_t* dst) {
  for (int64_t b = 0; b < count / kBlock; ++b) {
    const float* x = src + b * kBlock;
    uint8_t* block = dst + b * 34;
    float amax = 0.0f;
    for (int i = 0; i < kBlock; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(block, d);
    for (int i = 0; i < kBlock; ++i) block[2 + i] = uint8_t(int8_t(std::roundf(x[i] * id)));
  }
}

// Weighted symmetric types: the weighted least-squares scale search replaces the
// "extreme element maps to code 0" rule.
void quantize_q4_0_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst) {
  if (!importance) return quantize_q4_0(row, n, dst);
  const float sigma2 = row_sigma2(row, n);
  for (int64_t b = 0; b < n / kBlock; ++b) {
    const float* x = row + b * kBlock;
    float w[kBlock];
    int8_t codes[kBlock];
    block_weights(x, importance + b * kBlock, sigma2, w);
    const float d = ggml_blocks::search_symmetric(kBlock, 8, x, codes, w);
    uint8_t* block = dst + b * 18;
    store_f16(block, d);
    pack_nibbles(reinterpret_cast<const uint8_t*>(codes), block + 2);
  }
}

void quantize_q5_0_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst) {
  if (!importance) return quantize_q5_0(row, n, dst);
  const float sigma2 = row_sigma2(row, n);
  for (int64_t b = 0; b < n / kBlock; ++b) {
    const float* x = row + b * kBlock;
    float w[kBlock];
    int8_t codes[kBlock];
    block_weights(x, importance + b * kBlock, sigma2, w);
    const float d = ggml_blocks::search_symmetric(kBlock, 16, x, codes, w);
    uint8_t* block = dst + b * 22;
    store_f16(block, d);
    pack_high_bits(reinterpret_cast<const uint8_t*>(codes), block + 2);
    pack_nibbles(reinterpret_cast<const uint8_t*>(codes), block + 6);
  }
}

// Weighted affine types store m = -(search's offset), i.e. the block minimum used.
void quantize_q4_1_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst) {
  if (!importance) return quantize_q4_1(row, n, dst);
  const float sigma2 = row_sigma2(row, n);
  for (int64_t b = 0; b < n / kBlock; ++b) {
    const float* x = row + b * kBlock;
    float w[kBlock], min;
    uint8_t codes[kBlock];
    block_weights(x, importance + b * kBlock, sigma2, w);
    const float d = ggml_blocks::search_affine(kBlock, 15, x, w, codes, &min, -0.9f, 0.05f, 36, false);
    uint8_t* block = dst + b * 20;
    store_f16(block, d);
    store_f16(block + 2, -min);
    pack_nibbles(codes, block + 4);
  }
}

void quantize_q5_1_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst) {
  if (!importance) return quantize_q5_1(row, n, dst);
  const float sigma2 = row_sigma2(row, n);
  for (int64_t b = 0; b < n / kBlock; ++b) {
    const float* x = row + b * kBlock;
    float w[kBlock], min;
    uint8_t codes[kBlock];
    block_weights(x, importance + b * kBlock, sigma2, w);
    const float d = ggml_blocks::search_affine(kBlock, 31, x, w, codes, &min, -0.9f, 0.05f, 36, false);
    uint8_t* block = dst + b * 24;
    store_f16(block, d);
    store_f16(block + 2, -min);
    pack_high_bits(codes, block + 4);
    pack_nibbles(codes, block + 8);
  }
}

void dequantize_q4_0(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / kBlock; ++b) {
    const uint8_t* block = src + b * 18;
    const float d = load_f16(block);
    for (int e = 0; e < kBlock; ++e) dst[b * kBlock + e] = float(int(nibble(block + 2, e)) - 8) * d;
  }
}

void dequantize_q4_1(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / kBlock; ++b) {
    const uint8_t* block = src + b * 20;
    const float d = load_f16(block), m = load_f16(block + 2);
    for (int e = 0; e < kBlock; ++e) dst[b * kBlock + e] = float(nibble(block + 4, e)) * d + m;
  }
}

void dequantize_q5_0(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / kBlock; ++b) {
    const uint8_t* block = src + b * 22;
    const float d = load_f16(block);
    for (int e = 0; e < kBlock; ++e) {
      const int q = nibble(block + 6, e) | (high_bit(block + 2, e) << 4);
      dst[b * kBlock + e] = float(q - 16) * d;
    }
  }
}

void dequantize_q5_1(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / kBlock; ++b) {
    const uint8_t* block = src + b * 24;
    const float d = load_f16(block), m = load_f16(block + 2);
    for (int e = 0; e < kBlock; ++e) {
      const int q = nibble(block + 8, e) | (high_bit(block + 4, e) << 4);
      dst[b * kBlock + e] = float(q) * d + m;
    }
  }
}

void dequantize_q8_0(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / kBlock; ++b) {
    const uint8_t* block = src + b * 34;
    const float d = load_f16(block);
    for (int e = 0; e < kBlock; ++e) dst[b * kBlock + e] = float(int8_t(block[2 + e])) * d;
  }
}

}  // namespace llmpress

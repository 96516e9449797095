// IQ4_NL and IQ4_XS encoders, byte-identical to ggml_quantize_chunk. Both pick, per
// 32-element block, the scale that best fits the 16 non-uniform levels: a first guess from the
// largest |x|, then 15 candidate inverse scales around it, each scored by the weighted least-squares
// fit sum(w x q)^2 / sum(w q^2). IQ4_XS then stores the eight block scales as 6-bit codes of one f16
// super-block scale and re-picks the levels with those codes.
#include <cmath>
#include <cstring>

#include "llmpress/quant/ggml_block_bytes.h"
#include "llmpress/quant/ggml_block_search.h"
#include "llmpress/quant/ggml_blocks.h"
#include "llmpress/quant/ggml_iquant_tables.h"

namespace llmpress {
namespace {

using ggml_blocks::kGroupMaxEps;
using ggml_blocks::nearest_int;
using ggml_blocks::store_f16;
using ggml_tables::kIq4nlValues;

constexpr int kBlock = 32;
constexpr int kTries = 7;  // candidate inverse scales (values[0] + t) / max for t in [-7, 7]

// Index of the level nearest to x (ties to the upper level unless strictly closer below).
int nearest_level(float x) {
  const int8_t* v = kIq4nlValues;
  if (x <= v[0]) return 0;
  if (x >= v[15]) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (x < v[mid]) hi = mid;
    else lo = mid;
  }
  return x - v[hi - 1] < v[hi] - x ? hi - 1 : hi;
}

// Fit of the levels picked with inverse scale `id`: accumulates sum(w q x) and sum(w q^2).
void fit(const float* x, const float* w, float id, float& sumqx, float& sumq2, uint8_t* levels) {
  sumqx = sumq2 = 0;
  for (int j = 0; j < kBlock; ++j) {
    const int l = nearest_level(id * x[j]);
    if (levels) levels[j] = uint8_t(l);
    const float q = kIq4nlValues[l];
    sumqx += w[j] * q * x[j];
    sumq2 += w[j] * q * q;
  }
}

// The best scale of one 32-element block (0 for an all-zero block); levels for that scale in `levels`.
// sigma2 (the super-block's 2 * mean square) enters the importance weighting only.
float block_scale(const float* x, const float* importance, float sigma2, uint8_t* levels) {
  float w[kBlock];
  for (int j = 0; j < kBlock; ++j)
    w[j] = importance ? importance[j] * std::sqrt(sigma2 + x[j] * x[j]) : x[j] * x[j];
  float amax = 0, max = 0;
  for (int j = 0; j < kBlock; ++j)
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  if (amax < kGroupMaxEps) return 0;
  const float v0 = kIq4nlValues[0];
  float sumqx, sumq2;
  fit(x, w, 1 / (-max / v0), sumqx, sumq2, levels);
  float d = sumqx / sumq2;
  float best = d * sumqx;
  for (int t = -kTries; t <= kTries; ++t) {
    fit(x, w, (float(t) + v0) / max, sumqx, sumq2, nullptr);
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      d = sumqx / sumq2;
      best = d * sumqx;
    }
  }
  return d;
}

float super_block_sigma2(const float* x, int n) {
  float s = 0;
  for (int j = 0; j < n; ++j) s += x[j] * x[j];
  return s * (2.0f / float(n));
}

// Block j's 32 levels into 16 bytes: elements 0-15 in the low nibbles, 16-31 in the high ones.
void pack_levels(const uint8_t* levels, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = uint8_t(levels[j] | (levels[16 + j] << 4));
}

void encode_iq4_nl_block(const float* x, const float* importance, uint8_t* dst) {
  uint8_t levels[kBlock];
  const float d = block_scale(x, importance, super_block_sigma2(x, kBlock), levels);
  store_f16(dst, d);
  // Re-pick with the exact (unrounded) best scale: the search kept the first guess's levels.
  const float id = d != 0 ? 1 / d : 0.0f;
  for (int j = 0; j < kBlock; ++j) levels[j] = uint8_t(nearest_level(id * x[j]));
  pack_levels(levels, dst + 2);
}

// IQ4_XS (136 bytes): d f16 @0, scales_h u16 @2, scales_l[4] @4, qs[128] @8.
void encode_iq4_xs_block(const float* x, const float* importance, uint8_t* dst) {
  constexpr int kGroups = int(kSuperBlockElements) / kBlock;
  const float sigma2 = super_block_sigma2(x, int(kSuperBlockElements));
  uint8_t levels[kBlock];
  float scales[kGroups];
  float max_scale = 0, amax_scale = 0;
  for (int g = 0; g < kGroups; ++g) {
    scales[g] = block_scale(x + kBlock * g, importance ? importance + kBlock * g : nullptr, sigma2, levels);
    if (std::fabs(scales[g]) > amax_scale) {
      amax_scale = std::fabs(scales[g]);
      max_scale = scales[g];
    }
  }
  // Codes l in [-32, 31] of d = -max_scale / 32; levels re-picked with d * l, d before f16 rounding.
  const float d = -max_scale / 32;
  store_f16(dst, d);
  const float id = d != 0 ? 1 / d : 0.0f;
  uint16_t scales_h = 0;
  uint8_t* scales_l = dst + 4;
  std::memset(scales_l, 0, 4);
  for (int g = 0; g < kGroups; ++g) {
    const int l = std::max(-32, std::min(31, nearest_int(id * scales[g])));
    const float dl = d * float(l);
    const float idl = dl != 0 ? 1 / dl : 0.0f;
    for (int j = 0; j < kBlock; ++j) levels[j] = uint8_t(nearest_level(idl * x[kBlock * g + j]));
    pack_levels(levels, dst + 8 + 16 * g);
    const int code = l + 32;
    scales_l[g / 2] |= uint8_t((code & 0xf) << (4 * (g % 2)));
    scales_h |= uint16_t((code >> 4) << (2 * g));
  }
  ggml_blocks::store_u16(dst + 2, scales_h);
}

}  // namespace

void quantize_iq4_nl(const float* src, int64_t count, uint8_t* dst) {
  for (int64_t b = 0; b < count / kBlock; ++b) encode_iq4_nl_block(src + b * kBlock, nullptr, dst + b * 18);
}

void quantize_iq4_nl_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst) {
  for (int64_t b = 0; b < n / kBlock; ++b)
    encode_iq4_nl_block(row + b * kBlock, importance ? importance + b * kBlock : nullptr, dst + b * 18);
}

void quantize_iq4_xs(const float* src, int64_t count, uint8_t* dst) {
  for (int64_t b = 0; b < count / kSuperBlockElements; ++b)
    encode_iq4_xs_block(src + b * kSuperBlockElements, nullptr, dst + b * 136);
}

void quantize_iq4_xs_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst) {
  for (int64_t b = 0; b < n / kSuperBlockElements; ++b)
    encode_iq4_xs_block(row + b * kSuperBlockElements, importance ? importance + b * kSuperBlockElements : nullptr,
                        dst + b * 136);
}

}  // namespace llmpress

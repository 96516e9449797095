// 256-element k-quant super-blocks Q2_K..Q6_K (formats.md 2.3, 2.4, 2.7).
//
// Every encoder has the same three stages: a per-sub-block scale search, quantization of the
// sub-block scales to 4/6/8-bit codes under one f16 super-block scale, and re-quantization of
// the values with the f16-rounded scales actually stored (so decoding matches the search).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "llmpress/quant/ggml_block_bytes.h"
#include "llmpress/quant/ggml_block_search.h"
#include "llmpress/quant/ggml_blocks.h"

namespace llmpress {
namespace {

using ggml_blocks::load_f16;
using ggml_blocks::nearest_int;
using ggml_blocks::round_to_f16;
using ggml_blocks::store_f16;
using ggml_blocks::pack_q3_scales;
using ggml_blocks::unpack_q3_scale;
using ggml_blocks::pack_scale_min_k4;
using ggml_blocks::unpack_scale_min_k4;

constexpr int QK = int(kSuperBlockElements);
constexpr int64_t kQ2Bytes = 84, kQ3Bytes = 110, kQ4Bytes = 144, kQ5Bytes = 176, kQ6Bytes = 210;

// ---- bit layouts -------------------------------------------------------------------------

// 2-bit codes (Q2_K, low bits of Q3_K): each 128-element half uses 32 bytes; byte l holds
// elements l, l+32, l+64, l+96 of that half in bit pairs 0-1, 2-3, 4-5, 6-7.
void pack_2bit(const uint8_t* codes, uint8_t* qs) {
  for (int h = 0; h < QK; h += 128)
    for (int l = 0; l < 32; ++l)
      qs[h / 4 + l] = uint8_t(codes[h + l] | (codes[h + l + 32] << 2) | (codes[h + l + 64] << 4) |
                              (codes[h + l + 96] << 6));
}
int unpack_2bit(const uint8_t* qs, int e) { return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3; }

// 4-bit codes (Q4_K, low bits of Q5_K): 32-byte chunk c holds sub-block 2c in the low nibbles
// and sub-block 2c+1 in the high nibbles.
void pack_4bit(const uint8_t* codes, uint8_t* qs) {
  for (int c = 0; c < QK; c += 64)
    for (int l = 0; l < 32; ++l) qs[c / 2 + l] = uint8_t((codes[c + l] & 0x0f) | ((codes[c + l + 32] & 0x0f) << 4));
}
int unpack_4bit(const uint8_t* qs, int e) {
  const uint8_t byte = qs[32 * (e / 64) + e % 32];
  return (e % 64) < 32 ? byte & 0x0f : byte >> 4;
}

// ---- shared stages -----------------------------------------------------------------------

// Q2_K/Q4_K/Q5_K re-quantization with the stored scales: q = clamp(round((x + dmin*m)/(d*sc))).
// Sub-blocks with a zero scale keep the search's codes.
template <int kSub>
void requantize_affine(const float* x, float d, float dmin, const uint8_t* sc, const uint8_t* m, int nmax,
                       uint8_t* codes) {
  for (int j = 0; j < QK / kSub; ++j) {
    const float ds = d * float(sc[j]);
    if (ds == 0.0f) continue;
    const float dm = dmin * float(m[j]);
    for (int i = 0; i < kSub; ++i)
      codes[kSub * j + i] = uint8_t(std::max(0, std::min(nmax, nearest_int((x[kSub * j + i] + dm) / ds))));
  }
}

// Sum of squares of one super-block, left to right (feeds the imatrix sigma^2 and Q4_K/Q5_K weights).
float sum_squares(const float* x, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += x[i] * x[i];
  return s;
}

// imatrix weights w = I * sqrt(sigma2 + x^2) for one sub-block, and their sum.
float importance_weights(const float* x, const float* importance, float sigma2, int n, float* w) {
  for (int l = 0; l < n; ++l) w[l] = importance[l] * std::sqrt(sigma2 + x[l] * x[l]);
  float sum = 0;
  for (int l = 0; l < n; ++l) sum += w[l];
  return sum;
}

// Q3_K tail: re-quantize to [-4, 3] with the stored scales, then split the 3-bit codes into
// the 2-bit field and the hmask bit (element e -> hmask[e % 32] bit e / 32).
void finish_q3(const float* x, uint8_t* block, int8_t* codes) {
  const float d = load_f16(block + 108);
  for (int j = 0; j < 16; ++j) {
    const float ds = d * float(unpack_q3_scale(block + 96, j));
    if (ds == 0.0f) continue;
    for (int i = 0; i < 16; ++i)
      codes[16 * j + i] = int8_t(std::max(-4, std::min(3, nearest_int(x[16 * j + i] / ds))) + 4);
  }
  uint8_t* hmask = block;
  std::memset(hmask, 0, 32);
  uint8_t low[QK];
  for (int e = 0; e < QK; ++e) {
    int q = codes[e];
    if (q > 3) {
      hmask[e % 32] |= uint8_t(1 << (e / 32));
      q -= 4;
    }
    low[e] = uint8_t(q);
  }
  pack_2bit(low, block + 32);
}

// Q4_K/Q5_K tail: pack the 6-bit codes, store d/dmin, re-quantize. Returns the final codes.
template <int kNmax>
void finish_q45(const float* x, uint8_t* block, const uint8_t* ls, const uint8_t* lm, float d, float dmin,
                uint8_t* codes) {
  uint8_t* scales = block + 4;
  for (int j = 0; j < 8; ++j) pack_scale_min_k4(j, ls[j], lm[j], scales);
  store_f16(block, d);
  store_f16(block + 2, dmin);
  uint8_t sc[8], m[8];
  for (int j = 0; j < 8; ++j) unpack_scale_min_k4(j, scales, sc[j], m[j]);
  requantize_affine<32>(x, load_f16(block), load_f16(block + 2), sc, m, kNmax, codes);
}

void pack_q5_codes(const uint8_t* codes, uint8_t* block) {
  uint8_t* qh = block + 16;
  std::memset(qh, 0, 32);
  uint8_t low[QK];
  for (int e = 0; e < QK; ++e) {
    low[e] = codes[e] & 0x0f;
    if (codes[e] > 15) qh[e % 32] |= uint8_t(1 << (2 * (e / 64) + (e % 64) / 32));
  }
  pack_4bit(low, block + 48);
}

// Q6_K tail shared by plain and weighted: int8 sub-block scales under d = max_scale / -128.
void finish_q6(const float* x, const float* sub_scales, float max_scale, uint8_t* block, int8_t* codes) {
  const float iscale = -128.0f / max_scale;
  store_f16(block + 208, 1 / iscale);
  int8_t* scales = reinterpret_cast<int8_t*>(block + 192);
  for (int j = 0; j < 16; ++j) scales[j] = int8_t(std::min(127, nearest_int(iscale * sub_scales[j])));
  const float d = load_f16(block + 208);
  for (int j = 0; j < 16; ++j) {
    const float ds = d * float(scales[j]);
    if (ds == 0.0f) continue;
    for (int i = 0; i < 16; ++i)
      codes[16 * j + i] = int8_t(std::max(-32, std::min(31, nearest_int(x[16 * j + i] / ds))) + 32);
  }
  // ql: low nibbles; 64 bytes per 128-element half (elements l, l+32 low nibbles; l+64, l+96 high);
  // qh: high 2 bits, 32 bytes per half, element l + 32k in bits 2k..2k+1.
  for (int h = 0; h < 2; ++h) {
    const int8_t* c = codes + 128 * h;
    uint8_t* ql = block + 64 * h;
    uint8_t* qh = block + 128 + 32 * h;
    for (int l = 0; l < 32; ++l) {
      ql[l] = uint8_t((c[l] & 0x0f) | ((c[l + 64] & 0x0f) << 4));
      ql[l + 32] = uint8_t((c[l + 32] & 0x0f) | ((c[l + 96] & 0x0f) << 4));
      qh[l] = uint8_t((c[l] >> 4) | ((c[l + 32] >> 4) << 2) | ((c[l + 64] >> 4) << 4) | ((c[l + 96] >> 4) << 6));
    }
  }
}

// Q6_K search over one super-block; `importance` null uses w = x^2. Returns false (block
// zeroed) when every sub-block scale is below the zero threshold.
bool encode_q6_block(const float* x, const float* importance, uint8_t* block) {
  int8_t codes[QK];
  float sub_scales[16];
  float max_scale = 0, max_abs_scale = 0;
  for (int j = 0; j < 16; ++j) {
    sub_scales[j] = ggml_blocks::search_symmetric(16, 32, x + 16 * j, codes + 16 * j,
                                                  importance ? importance + 16 * j : nullptr);
    if (std::fabs(sub_scales[j]) > max_abs_scale) {
      max_abs_scale = std::fabs(sub_scales[j]);
      max_scale = sub_scales[j];
    }
  }
  if (max_abs_scale < ggml_blocks::kGroupMaxEps) {
    std::memset(block, 0, size_t(kQ6Bytes));
    return false;
  }
  finish_q6(x, sub_scales, max_scale, block, codes);
  return true;
}

}  // namespace

// ---- Q2_K ----------------------------------------------------------------------------------

void quantize_q2_k(const float* src, int64_t count, uint8_t* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    const float* x = src + b * QK;
    uint8_t* block = dst + b * kQ2Bytes;
    uint8_t codes[QK];
    float scales[16], mins[16], w[16];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; ++j) {
      for (int l = 0; l < 16; ++l) w[l] = std::fabs(x[16 * j + l]);
      scales[j] = ggml_blocks::search_affine(16, 3, x + 16 * j, w, codes + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    // 4-bit scale codes (low nibble) and min codes (high nibble) under d = max/15, dmin = max/15.
    uint8_t* sc_bytes = block;
    if (max_scale > 0) {
      const float iscale = 15.0f / max_scale;
      for (int j = 0; j < 16; ++j) sc_bytes[j] = uint8_t(nearest_int(iscale * scales[j]));
      store_f16(block + 80, max_scale / 15.0f);
    } else {
      std::memset(sc_bytes, 0, 16);
      store_f16(block + 80, 0.0f);
    }
    if (max_min > 0) {
      const float iscale = 15.0f / max_min;
      for (int j = 0; j < 16; ++j) sc_bytes[j] |= uint8_t(nearest_int(iscale * mins[j]) << 4);
      store_f16(block + 82, max_min / 15.0f);
    } else {
      store_f16(block + 82, 0.0f);
    }
    uint8_t sc[16], m[16];
    for (int j = 0; j < 16; ++j) {
      sc[j] = sc_bytes[j] & 0x0f;
      m[j] = sc_bytes[j] >> 4;
    }
    requantize_affine<16>(x, load_f16(block + 80), load_f16(block + 82), sc, m, 3, codes);
    pack_2bit(codes, block + 16);
  }
}

void quantize_q2_k_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst) {
  if (!importance) return quantize_q2_k(row, n, dst);
  for (int64_t b = 0; b < n / QK; ++b) {
    const float* x = row + b * QK;
    const float* imp = importance + b * QK;
    uint8_t* block = dst + b * kQ2Bytes;
    const float sigma2 = sum_squares(x, QK) / float(QK);
    uint8_t codes[QK], ls[16], lm[16];
    float scales[16], mins[16], sw[16], w[16];
    for (int j = 0; j < 16; ++j) {
      sw[j] = importance_weights(x + 16 * j, imp + 16 * j, sigma2, 16, w);
      scales[j] = ggml_blocks::search_affine(16, 3, x + 16 * j, w, codes + 16 * j, &mins[j], -0.9f, 0.05f, 36, false);
    }
    // The 4-bit scale and min codes get their own weighted least-squares scales.
    const float d = ggml_blocks::search_scale_codes(16, 15, scales, ls, sw);
    const float dmin = ggml_blocks::search_scale_codes(16, 15, mins, lm, sw);
    store_f16(block + 80, d);
    store_f16(block + 82, dmin);
    uint8_t sc[16], m[16];
    for (int j = 0; j < 16; ++j) {
      block[j] = uint8_t(ls[j] | (lm[j] << 4));
      sc[j] = block[j] & 0x0f;
      m[j] = block[j] >> 4;
    }
    requantize_affine<16>(x, load_f16(block + 80), load_f16(block + 82), sc, m, 3, codes);
    pack_2bit(codes, block + 16);
  }
}

void dequantize_q2_k(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    const uint8_t* block = src + b * kQ2Bytes;
    const float d = load_f16(block + 80), dmin = load_f16(block + 82);
    for (int e = 0; e < QK; ++e) {
      const uint8_t s = block[e / 16];
      const float dl = d * float(s & 0x0f), ml = dmin * float(s >> 4);
      dst[b * QK + e] = dl * float(unpack_2bit(block + 16, e)) - ml;
    }
  }
}

// ---- Q3_K ----------------------------------------------------------------------------------

void quantize_q3_k(const float* src, int64_t count, uint8_t* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    const float* x = src + b * QK;
    uint8_t* block = dst + b * kQ3Bytes;
    int8_t codes[QK];
    float scales[16];
    float max_scale = 0, amax = 0;
    for (int j = 0; j < 16; ++j) {
      scales[j] = ggml_blocks::search_symmetric_refined(16, 4, x + 16 * j, codes + 16 * j);
      if (std::fabs(scales[j]) > amax) {
        amax = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    // Signed 6-bit codes: the scale of largest magnitude maps to -32.
    std::memset(block + 96, 0, 12);
    if (max_scale != 0.0f) {
      const float iscale = -32.0f / max_scale;
      int sc[16];
      for (int j = 0; j < 16; ++j) {
        const int8_t l = int8_t(nearest_int(iscale * scales[j]));  // ggml narrows to int8 before clamping
        sc[j] = std::max(-32, std::min(31, int(l))) + 32;
      }
      pack_q3_scales(sc, block + 96);
      store_f16(block + 108, 1 / iscale);
    } else {
      store_f16(block + 108, 0.0f);
    }
    finish_q3(x, block, codes);
  }
}

void quantize_q3_k_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst) {
  if (!importance) return quantize_q3_k(row, n, dst);
  for (int64_t b = 0; b < n / QK; ++b) {
    const float* x = row + b * QK;
    const float* imp = importance + b * QK;
    uint8_t* block = dst + b * kQ3Bytes;
    const float sigma2 = 2 * sum_squares(x, QK) / float(QK);
    int8_t codes[QK], ls[16];
    float scales[16], sw[16], w[16];
    for (int j = 0; j < 16; ++j) {
      sw[j] = importance_weights(x + 16 * j, imp + 16 * j, sigma2, 16, w);
      scales[j] = ggml_blocks::search_symmetric(16, 4, x + 16 * j, codes + 16 * j, w);
    }
    const float d = ggml_blocks::search_symmetric(16, 32, scales, ls, sw);
    int sc[16];
    for (int j = 0; j < 16; ++j) sc[j] = ls[j];
    pack_q3_scales(sc, block + 96);
    store_f16(block + 108, d);
    finish_q3(x, block, codes);
  }
}

void dequantize_q3_k(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    const uint8_t* block = src + b * kQ3Bytes;
    const float d = load_f16(block + 108);
    for (int e = 0; e < QK; ++e) {
      const float dl = d * float(unpack_q3_scale(block + 96, e / 16));
      const int high = (block[e % 32] >> (e / 32)) & 1;
      dst[b * QK + e] = dl * float(unpack_2bit(block + 32, e) - (high ? 0 : 4));
    }
  }
}

// ---- Q4_K / Q5_K ---------------------------------------------------------------------------

namespace {

// Reference search for Q4_K (nmax 15) and Q5_K (nmax 31): sub-block weights av_x + |x| with
// av_x the sub-block RMS; 6-bit scale/min codes under d = max_scale/63, dmin = max_min/63.
template <int kNmax>
void encode_q45_block_ref(const float* x, uint8_t* block, uint8_t* codes) {
  const float rmin = kNmax == 15 ? -1.0f : -0.5f;
  const int nstep = kNmax == 15 ? 20 : 15;
  float scales[8], mins[8], w[32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float av_x = std::sqrt(sum_squares(x + 32 * j, 32) / 32);
    for (int l = 0; l < 32; ++l) w[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = ggml_blocks::search_affine(32, kNmax, x + 32 * j, w, codes + 32 * j, &mins[j], rmin, 0.1f, nstep, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  uint8_t ls[8], lm[8];
  for (int j = 0; j < 8; ++j) {
    ls[j] = std::min<uint8_t>(63, uint8_t(nearest_int(inv_scale * scales[j])));
    lm[j] = std::min<uint8_t>(63, uint8_t(nearest_int(inv_min * mins[j])));
  }
  finish_q45<kNmax>(x, block, ls, lm, max_scale / 63.0f, max_min / 63.0f, codes);
}

// imatrix search: weights I*sqrt(sigma2 + x^2) with sigma2 = 2*mean square of the super-block;
// the 6-bit codes come from weighted least squares. Q5_K clamps the codes to 63, Q4_K does not.
template <int kNmax>
void encode_q45_block_weighted(const float* x, const float* imp, uint8_t* block, uint8_t* codes) {
  const float sigma2 = 2 * sum_squares(x, QK) / float(QK);
  float scales[8], mins[8], sw[8], w[32];
  for (int j = 0; j < 8; ++j) {
    sw[j] = importance_weights(x + 32 * j, imp + 32 * j, sigma2, 32, w);
    scales[j] = ggml_blocks::search_affine(32, kNmax, x + 32 * j, w, codes + 32 * j, &mins[j], -0.9f, 0.05f, 36, false);
  }
  uint8_t ls[8], lm[8];
  const float d = ggml_blocks::search_scale_codes(8, 63, scales, ls, sw);
  const float dmin = ggml_blocks::search_scale_codes(8, 63, mins, lm, sw);
  if (kNmax == 31)
    for (int j = 0; j < 8; ++j) {
      ls[j] = std::min<uint8_t>(63, ls[j]);
      lm[j] = std::min<uint8_t>(63, lm[j]);
    }
  finish_q45<kNmax>(x, block, ls, lm, d, dmin, codes);
}

}  // namespace

void quantize_q4_k(const float* src, int64_t count, uint8_t* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    uint8_t codes[QK];
    encode_q45_block_ref<15>(src + b * QK, dst + b * kQ4Bytes, codes);
    pack_4bit(codes, dst + b * kQ4Bytes + 16);
  }
}

void quantize_q4_k_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst) {
  if (!importance) return quantize_q4_k(row, n, dst);
  for (int64_t b = 0; b < n / QK; ++b) {
    uint8_t codes[QK];
    encode_q45_block_weighted<15>(row + b * QK, importance + b * QK, dst + b * kQ4Bytes, codes);
    pack_4bit(codes, dst + b * kQ4Bytes + 16);
  }
}

void quantize_q5_k(const float* src, int64_t count, uint8_t* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    uint8_t codes[QK];
    encode_q45_block_ref<31>(src + b * QK, dst + b * kQ5Bytes, codes);
    pack_q5_codes(codes, dst + b * kQ5Bytes);
  }
}

void quantize_q5_k_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst) {
  if (!importance) return quantize_q5_k(row, n, dst);
  for (int64_t b = 0; b < n / QK; ++b) {
    uint8_t codes[QK];
    encode_q45_block_weighted<31>(row + b * QK, importance + b * QK, dst + b * kQ5Bytes, codes);
    pack_q5_codes(codes, dst + b * kQ5Bytes);
  }
}

void dequantize_q4_k(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    const uint8_t* block = src + b * kQ4Bytes;
    const float d = load_f16(block), dmin = load_f16(block + 2);
    for (int e = 0; e < QK; ++e) {
      uint8_t sc, m;
      unpack_scale_min_k4(e / 32, block + 4, sc, m);
      const float d1 = d * float(sc), m1 = dmin * float(m);
      dst[b * QK + e] = d1 * float(unpack_4bit(block + 16, e)) - m1;
    }
  }
}

void dequantize_q5_k(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    const uint8_t* block = src + b * kQ5Bytes;
    const float d = load_f16(block), dmin = load_f16(block + 2);
    for (int e = 0; e < QK; ++e) {
      uint8_t sc, m;
      unpack_scale_min_k4(e / 32, block + 4, sc, m);
      const float d1 = d * float(sc), m1 = dmin * float(m);
      const int high = (block[16 + e % 32] >> (2 * (e / 64) + (e % 64) / 32)) & 1;
      dst[b * QK + e] = d1 * float(unpack_4bit(block + 48, e) + 16 * high) - m1;
    }
  }
}

// ---- Q6_K ----------------------------------------------------------------------------------

void quantize_q6_k(const float* src, int64_t count, uint8_t* dst) {
  for (int64_t b = 0; b < count / QK; ++b) encode_q6_block(src + b * QK, nullptr, dst + b * kQ6Bytes);
}

// With an imatrix ggml weights the Q6_K search by the importance alone (no sqrt(sigma2 + x^2)).
void quantize_q6_k_weighted(const float* row, int64_t n, const float* importance, uint8_t* dst) {
  for (int64_t b = 0; b < n / QK; ++b)
    encode_q6_block(row + b * QK, importance ? importance + b * QK : nullptr, dst + b * kQ6Bytes);
}

void dequantize_q6_k(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    const uint8_t* block = src + b * kQ6Bytes;
    const float d = load_f16(block + 208);
    const int8_t* scales = reinterpret_cast<const int8_t*>(block + 192);
    for (int e = 0; e < QK; ++e) {
      const int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
      const uint8_t lo_byte = block[64 * h + (k % 2) * 32 + l];
      const int low = k < 2 ? lo_byte & 0x0f : lo_byte >> 4;
      const int high = (block[128 + 32 * h + l] >> (2 * k)) & 3;
      dst[b * QK + e] = d * float(scales[e / 16]) * float((low | (high << 4)) - 32);
    }
  }
}

}  // namespace llmpress

// Decoders of ggml's i-quant (IQ1_S ... IQ4_XS) and ternary (TQ1_0, TQ2_0) blocks. Writing them is
// not supported. Every value is computed with the same float operations, in the same order, as
// ggml's dequantize_row_* (so the floats match exactly); the grids are in ggml_iquant_tables.cpp.
//
// Common shape of the 256-element types: one f16 super-block scale `d`, eight groups of 32 elements
// with a small integer scale each, and per run of 8 (or 4) elements an index into a grid of
// magnitudes plus sign bits. In the 2-bit and IQ3_XXS types the group scale s gives
// d * (0.5 + s) * 0.25 (or * 0.5); in IQ1_*/IQ3_S it gives d * (2s + 1).
#include "llmpress/quant/ggml_block_bytes.h"
#include "llmpress/quant/ggml_blocks.h"
#include "llmpress/quant/ggml_iquant_tables.h"

namespace llmpress {
namespace {

using ggml_blocks::load_f16;
using ggml_blocks::load_u16;
using ggml_blocks::load_u32;
using ggml_tables::grid_byte;
using ggml_tables::kIq2SignMask;

constexpr int QK = int(kSuperBlockElements);
constexpr float kIq1Delta = 0.125f;  // IQ1S_DELTA = IQ1M_DELTA: the grid's shift for a group


// `n` elements of `entry` times `scale`, element j negated when bit j of `signs` is set.
// (ggml multiplies by -1.f or 1.f, which is exactly negation.)
void signed_run(uint64_t entry, int n, float scale, uint8_t signs, float* out) {
  for (int j = 0; j < n; ++j) {
    const float v = scale * float(grid_byte(entry, j));
    out[j] = (signs & kIq2SignMask[j]) ? -v : v;
  }
}

// The 2-bit and IQ3_XXS group scale: d * (0.5 + s) * factor, in ggml's order.
float half_step_scale(float d, uint32_t s, float factor) { return d * (0.5f + float(s)) * factor; }

}  // namespace

// IQ2_XXS (66 bytes): d f16 @0, then per group of 32 eight bytes @2+8g: four grid indices (one per
// run of 8) and a LE u32 with four 7-bit sign indices (bits 7l..7l+6) and the 4-bit scale (bits 28-31).
void dequantize_iq2_xxs(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    const uint8_t* block = src + b * 66;
    const float d = load_f16(block);
    for (int g = 0; g < 8; ++g) {
      const uint8_t* q = block + 2 + 8 * g;
      const uint32_t aux = load_u32(q + 4);
      const float db = half_step_scale(d, aux >> 28, 0.25f);
      for (int l = 0; l < 4; ++l) {
        const uint8_t signs = ggml_tables::kIq2Signs[(aux >> (7 * l)) & 127];
        signed_run(ggml_tables::kIq2xxsGrid[q[l]], 8, db, signs, dst + b * QK + 32 * g + 8 * l);
      }
    }
  }
}

// IQ2_XS (74 bytes): d f16 @0, 32 LE u16 @2 (one per run of 8: grid index bits 0-8, sign index bits
// 9-15), scales[8] @66 (low nibble: runs 0-1 of the group, high nibble: runs 2-3).
void dequantize_iq2_xs(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    const uint8_t* block = src + b * 74;
    const float d = load_f16(block);
    for (int g = 0; g < 8; ++g) {
      const uint8_t sc = block[66 + g];
      const float db[2] = {half_step_scale(d, sc & 0xf, 0.25f), half_step_scale(d, sc >> 4, 0.25f)};
      for (int l = 0; l < 4; ++l) {
        const uint16_t q = load_u16(block + 2 + 2 * (4 * g + l));
        signed_run(ggml_tables::kIq2xsGrid[q & 511], 8, db[l / 2], ggml_tables::kIq2Signs[q >> 9],
                   dst + b * QK + 32 * g + 8 * l);
      }
    }
  }
}

// IQ2_S (82 bytes): d f16 @0, grid index low bytes [32] @2 and sign bytes [32] @34 (one per run of 8),
// qh[8] @66 (index bits 8-9 of run l in bits 2l..2l+1), scales[8] @74 as in IQ2_XS.
void dequantize_iq2_s(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    const uint8_t* block = src + b * 82;
    const float d = load_f16(block);
    for (int g = 0; g < 8; ++g) {
      const uint8_t sc = block[74 + g], qh = block[66 + g];
      const float db[2] = {half_step_scale(d, sc & 0xf, 0.25f), half_step_scale(d, sc >> 4, 0.25f)};
      for (int l = 0; l < 4; ++l) {
        const int index = block[2 + 4 * g + l] | (((qh >> (2 * l)) & 3) << 8);
        signed_run(ggml_tables::kIq2sGrid[index], 8, db[l / 2], block[34 + 4 * g + l], dst + b * QK + 32 * g + 8 * l);
      }
    }
  }
}

// IQ3_XXS (98 bytes): d f16 @0, grid indices [64] @2 (one per run of 4), then per group a LE u32 @66+4g
// with four 7-bit sign indices (one per run of 8) and the 4-bit scale (bits 28-31).
void dequantize_iq3_xxs(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    const uint8_t* block = src + b * 98;
    const float d = load_f16(block);
    for (int g = 0; g < 8; ++g) {
      const uint32_t aux = load_u32(block + 66 + 4 * g);
      const float db = half_step_scale(d, aux >> 28, 0.5f);
      for (int l = 0; l < 4; ++l) {
        const uint8_t signs = ggml_tables::kIq2Signs[(aux >> (7 * l)) & 127];
        float* out = dst + b * QK + 32 * g + 8 * l;
        const uint8_t* q = block + 2 + 8 * g + 2 * l;
        signed_run(ggml_tables::kIq3xxsGrid[q[0]], 4, db, signs, out);
        signed_run(ggml_tables::kIq3xxsGrid[q[1]], 4, db, uint8_t(signs >> 4), out + 4);
      }
    }
  }
}

// IQ3_S (110 bytes): d f16 @0, grid index low bytes [64] @2 (one per run of 4), qh[8] @66 (bit k of
// qh[g] is index bit 8 of run k of group g), sign bytes [32] @74 (one per run of 8), scales[4] @106
// (group g: nibble g % 2 of byte g / 2; scale d * (1 + 2s)).
void dequantize_iq3_s(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    const uint8_t* block = src + b * 110;
    const float d = load_f16(block);
    for (int g = 0; g < 8; ++g) {
      const int s = (block[106 + g / 2] >> (4 * (g % 2))) & 0xf;
      const float db = d * float(1 + 2 * s);
      const uint8_t qh = block[66 + g];
      for (int k = 0; k < 8; ++k) {
        const int index = block[2 + 8 * g + k] | (((qh >> k) & 1) << 8);
        const uint8_t signs = block[74 + 4 * g + k / 2];
        signed_run(ggml_tables::kIq3sGrid[index], 4, db, uint8_t(k % 2 ? signs >> 4 : signs),
                   dst + b * QK + 32 * g + 4 * k);
      }
    }
  }
}

// IQ1_S (50 bytes): d f16 @0, grid index low bytes [32] @2 (one per run of 8), then per group a LE
// u16 @34+2g: index bits 8-10 of run l in bits 3l..3l+2, scale in bits 12-14, delta sign in bit 15.
// Value: d * (2s + 1) * (grid + delta), grid values -1/0/1.
void dequantize_iq1_s(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    const uint8_t* block = src + b * 50;
    const float d = load_f16(block);
    for (int g = 0; g < 8; ++g) {
      const uint16_t qh = load_u16(block + 34 + 2 * g);
      const float dl = d * float(2 * ((qh >> 12) & 7) + 1);
      const float delta = (qh & 0x8000) ? -kIq1Delta : kIq1Delta;
      for (int l = 0; l < 4; ++l) {
        const uint64_t entry = ggml_tables::kIq1sGrid[block[2 + 4 * g + l] | (((qh >> (3 * l)) & 7) << 8)];
        float* out = dst + b * QK + 32 * g + 8 * l;
        for (int j = 0; j < 8; ++j) out[j] = dl * (float(int8_t(grid_byte(entry, j))) + delta);
      }
    }
  }
}

// IQ1_M (56 bytes, no f16 field): grid index low bytes [32] @0 (one per run of 8), qh[16] @32 (one
// nibble per run: index bits 8-10, bit 3 = delta sign), scales as four LE u16 @48: each holds four
// 3-bit run-pair scales in bits 0-11 and 4 bits of the f16 super-block scale in bits 12-15.
void dequantize_iq1_m(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    const uint8_t* block = src + b * 56;
    uint16_t sc[4];
    for (int i = 0; i < 4; ++i) sc[i] = load_u16(block + 48 + 2 * i);
    const uint16_t d_bits =
        uint16_t((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
    const float d = f16_to_f32(d_bits);
    for (int g = 0; g < 8; ++g) {
      const int shift = 6 * (g % 2);
      const float dl[2] = {d * float(2 * ((sc[g / 2] >> shift) & 7) + 1),
                           d * float(2 * ((sc[g / 2] >> (shift + 3)) & 7) + 1)};
      for (int l = 0; l < 4; ++l) {
        const uint8_t nibble = uint8_t(block[32 + 2 * g + l / 2] >> (4 * (l % 2))) & 0xf;
        const uint64_t entry = ggml_tables::kIq1sGrid[block[4 * g + l] | ((nibble & 7) << 8)];
        const float delta = (nibble & 8) ? -kIq1Delta : kIq1Delta;
        float* out = dst + b * QK + 32 * g + 8 * l;
        for (int j = 0; j < 8; ++j) out[j] = dl[l / 2] * (float(int8_t(grid_byte(entry, j))) + delta);
      }
    }
  }
}

// IQ4_NL (18 bytes per 32): d f16 @0, qs[16] @2 with Q4_0's nibble order; the 4-bit code selects one
// of 16 non-uniform levels.
void dequantize_iq4_nl(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / kLegacyBlockElements; ++b) {
    const uint8_t* block = src + b * 18;
    const float d = load_f16(block);
    float* out = dst + b * kLegacyBlockElements;
    for (int j = 0; j < 16; ++j) {
      out[j] = d * float(ggml_tables::kIq4nlValues[block[2 + j] & 0xf]);
      out[j + 16] = d * float(ggml_tables::kIq4nlValues[block[2 + j] >> 4]);
    }
  }
}

// IQ4_XS (136 bytes): d f16 @0, scales_h LE u16 @2 (bits 2g..2g+1: high bits of group g's scale),
// scales_l[4] @4 (nibble g % 2 of byte g / 2: low bits), qs[128] @8 (16 bytes per group, IQ4_NL's
// nibble order). Group scale d * (s - 32) with the 6-bit s.
void dequantize_iq4_xs(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    const uint8_t* block = src + b * 136;
    const float d = load_f16(block);
    const uint16_t scales_h = load_u16(block + 2);
    for (int g = 0; g < 8; ++g) {
      const int s = ((block[4 + g / 2] >> (4 * (g % 2))) & 0xf) | (((scales_h >> (2 * g)) & 3) << 4);
      const float dl = d * float(s - 32);
      const uint8_t* qs = block + 8 + 16 * g;
      float* out = dst + b * QK + 32 * g;
      for (int j = 0; j < 16; ++j) {
        out[j] = dl * float(ggml_tables::kIq4nlValues[qs[j] & 0xf]);
        out[j + 16] = dl * float(ggml_tables::kIq4nlValues[qs[j] >> 4]);
      }
    }
  }
}

// TQ1_0 (54 bytes): qs[48] @0, qh[4] @48, d f16 @52. Each byte holds base-3 digits as a fixed-point
// fraction (byte = ceil(v * 256 / 243) for the 5-digit number v); digit n is read by multiplying by
// 3^n (mod 256) and taking the top "trit" of 3 * byte / 256. Elements: qs[0..31] digits 0-4 ->
// 0..159 (digit-major, byte-minor), qs[32..47] -> 160..239, qh[0..3] digits 0-3 -> 240..255.
void dequantize_tq1_0(const uint8_t* src, int64_t count, float* dst) {
  static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
  const auto trit = [](uint8_t byte, int n) { return int((uint16_t(uint8_t(byte * pow3[n])) * 3) >> 8); };
  for (int64_t b = 0; b < count / QK; ++b) {
    const uint8_t* block = src + b * 54;
    const float d = load_f16(block + 52);
    float* out = dst + b * QK;
    for (int n = 0; n < 5; ++n)
      for (int m = 0; m < 32; ++m) out[32 * n + m] = float(trit(block[m], n) - 1) * d;
    for (int n = 0; n < 5; ++n)
      for (int m = 0; m < 16; ++m) out[160 + 16 * n + m] = float(trit(block[32 + m], n) - 1) * d;
    for (int n = 0; n < 4; ++n)
      for (int m = 0; m < 4; ++m) out[240 + 4 * n + m] = float(trit(block[48 + m], n) - 1) * d;
  }
}

// TQ2_0 (66 bytes): qs[64] @0, d f16 @64. 2-bit codes q in Q2_K's order (byte 32h + l holds elements
// 128h + l + 32k in bits 2k..2k+1); value (q - 1) * d.
void dequantize_tq2_0(const uint8_t* src, int64_t count, float* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    const uint8_t* block = src + b * 66;
    const float d = load_f16(block + 64);
    for (int e = 0; e < QK; ++e) {
      const int q = (block[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
      dst[b * QK + e] = float(q - 1) * d;
    }
  }
}

}  // namespace llmpress

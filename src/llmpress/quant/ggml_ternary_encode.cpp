// TQ1_0 and TQ2_0 encoders (ternary weights of BitNet b1.58-style models), byte-identical to ggml's
// quantize_row_tq*_ref: one f16 scale d = max|x| per 256 elements and codes round(x / d) in {-1, 0, 1}.
// ggml ignores importance for these types, so there is no weighted variant.
#include <cmath>

#include "llmpress/quant/ggml_block_bytes.h"
#include "llmpress/quant/ggml_blocks.h"

namespace llmpress {
namespace {

constexpr int QK = int(kSuperBlockElements);

float absolute_max(const float* x) {
  float amax = 0;
  for (int j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(x[j]));
  return amax;
}

// round(x * id) + 1: the trit 0, 1 or 2 (round half away from zero, as lroundf).
int trit(float x, float id) { return int(std::lround(x * id)) + 1; }

// Base-3 digits of v as a byte holding the fraction v / 3^5 (ceiling of v * 256 / 243), so the
// decoder can read digit n as the top trit of byte * 3^n.
uint8_t trits_to_byte(int v) { return uint8_t((v * 256 + 242) / 243); }

}  // namespace

// TQ1_0 (54 bytes): qs[48] (5 trits per byte; elements 0-159 over bytes 0-31 digit-major, 160-239
// over bytes 32-47), qh[4] (4 trits per byte: 240-255), d f16 @52.
void quantize_tq1_0(const float* src, int64_t count, uint8_t* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    const float* x = src + b * QK;
    uint8_t* block = dst + b * 54;
    const float d = absolute_max(x);
    const float id = d != 0 ? 1.0f / d : 0.0f;
    for (int m = 0; m < 32; ++m) {
      int v = 0;
      for (int n = 0; n < 5; ++n) v = 3 * v + trit(x[m + 32 * n], id);
      block[m] = trits_to_byte(v);
    }
    for (int m = 0; m < 16; ++m) {
      int v = 0;
      for (int n = 0; n < 5; ++n) v = 3 * v + trit(x[160 + m + 16 * n], id);
      block[32 + m] = trits_to_byte(v);
    }
    for (int m = 0; m < 4; ++m) {
      int v = 0;
      for (int n = 0; n < 4; ++n) v = 3 * v + trit(x[240 + m + 4 * n], id);
      block[48 + m] = trits_to_byte(3 * v);  // four trits, shifted up to the most significant places
    }
    ggml_blocks::store_f16(block + 52, d);
  }
}

// TQ2_0 (66 bytes): qs[64] with 2-bit codes in Q2_K's order (byte 32h + m holds elements
// 128h + m + 32k in bits 2k..2k+1), d f16 @64.
void quantize_tq2_0(const float* src, int64_t count, uint8_t* dst) {
  for (int64_t b = 0; b < count / QK; ++b) {
    const float* x = src + b * QK;
    uint8_t* block = dst + b * 66;
    const float d = absolute_max(x);
    const float id = d != 0 ? 1.0f / d : 0.0f;
    for (int h = 0; h < 2; ++h)
      for (int m = 0; m < 32; ++m) {
        int q = 0;
        for (int k = 0; k < 4; ++k) q |= (trit(x[128 * h + m + 32 * k], id) & 3) << (2 * k);
        block[32 * h + m] = uint8_t(q);
      }
    ggml_blocks::store_f16(block + 64, d);
  }
}

}  // namespace llmpress

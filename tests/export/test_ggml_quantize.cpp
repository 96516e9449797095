// Q8_0 / Q4_0 against the dequantization formulas and ggml's rounding rules (formats.md 2.2),
// and against the reader's decoder (written independently by the io helper).
#include "llmpress/export/ggml_quantize.h"

#include <cmath>
#include <cstring>
#include <random>

#include "llmpress/core/error.h"
#include "llmpress/core/half.h"
#include "llmpress/io/tensor_data.h"
#include "test_util.h"

namespace llmpress {
namespace {

uint16_t scale_bits(const uint8_t* block) { return uint16_t(block[0] | (block[1] << 8)); }
float scale(const uint8_t* block) { return f16_to_f32(scale_bits(block)); }
int q8(const uint8_t* block, int i) { return int(int8_t(block[2 + i])); }
int q4(const uint8_t* block, int i) { return i < 16 ? block[2 + i] & 0x0f : block[2 + i - 16] >> 4; }

TEST(GgmlQuantize, Q8_0TiesRoundHalfAwayFromZero) {
  float x[32] = {};
  x[0] = 127.0f;  // amax 127 -> d = 1 exactly
  x[1] = 2.5f;
  x[2] = -2.5f;
  x[3] = 0.5f;
  x[4] = -0.5f;
  x[5] = -127.0f;
  x[6] = 1.49f;
  uint8_t block[34];
  quantize_q8_0(x, 32, block);
  EXPECT_EQ(scale_bits(block), 0x3c00);  // f16 1.0
  EXPECT_EQ(q8(block, 0), 127);
  EXPECT_EQ(q8(block, 1), 3);
  EXPECT_EQ(q8(block, 2), -3);
  EXPECT_EQ(q8(block, 3), 1);
  EXPECT_EQ(q8(block, 4), -1);
  EXPECT_EQ(q8(block, 5), -127);
  EXPECT_EQ(q8(block, 6), 1);
  EXPECT_EQ(q8(block, 7), 0);
}

TEST(GgmlQuantize, AllZeroBlocksHaveZeroScale) {
  const float zeros[32] = {};
  uint8_t b8[34], b4[18];
  quantize_q8_0(zeros, 32, b8);
  quantize_q4_0(zeros, 32, b4);
  EXPECT_EQ(scale_bits(b8), 0);
  EXPECT_EQ(scale_bits(b4), 0x8000);  // ggml computes d = 0 / -8 = -0.0 and stores f16 -0
  for (int i = 0; i < 32; ++i) EXPECT_EQ(q8(b8, i), 0);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(b4[2 + i], 0x88);  // code 8 = value 0 in both nibbles
}

TEST(GgmlQuantize, Q4_0MaxElementMapsToCodeZeroAndNibbleOrder) {
  float x[32] = {};
  x[3] = 8.0f;     // largest magnitude, positive: d = 8 / -8 = -1
  x[20] = -8.0f;   // same magnitude later: not the max (first wins); 16.5 -> clamped to 15
  x[1] = 1.5f;     // -1.5 + 8.5 = 7
  x[2] = -0.5f;    // 0.5 + 8.5 = 9
  x[17] = 0.5f;    // -0.5 + 8.5 = 8 exactly
  x[18] = 0.49f;   // 8.01 -> 8
  x[19] = 0.51f;   // 7.99 -> 7 (truncation, not rounding)
  uint8_t block[18];
  quantize_q4_0(x, 32, block);
  EXPECT_EQ(scale(block), -1.0f);
  EXPECT_EQ(q4(block, 3), 0);
  EXPECT_EQ(q4(block, 20), 15);
  EXPECT_EQ(q4(block, 1), 7);
  EXPECT_EQ(q4(block, 2), 9);
  EXPECT_EQ(q4(block, 17), 8);
  EXPECT_EQ(q4(block, 18), 8);
  EXPECT_EQ(q4(block, 19), 7);
  EXPECT_EQ(q4(block, 0), 8);
  // Element j in the low nibble of byte j, element j + 16 in the high nibble.
  EXPECT_EQ(block[2 + 1] & 0x0f, 7);
  EXPECT_EQ(block[2 + 1] >> 4, 8);  // element 17
  EXPECT_EQ(block[2 + 4] >> 4, 15);  // element 20
}

TEST(GgmlQuantize, Q4_0NegativeMaxFirstOnTies) {
  float x[32] = {};
  x[0] = -4.0f;  // first of two equal magnitudes: d = -4 / -8 = 0.5
  x[1] = 4.0f;   // 8 + 8.5 -> 16 -> clamped 15
  uint8_t block[18];
  quantize_q4_0(x, 32, block);
  EXPECT_EQ(scale(block), 0.5f);
  EXPECT_EQ(q4(block, 0), 0);
  EXPECT_EQ(q4(block, 1), 15);
}

TEST(GgmlQuantize, RandomRowsWithinHalfAStepAndMatchTheReadersDecoder) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t n = 32 * 64;
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  for (int64_t b = 0; b < n / 32; b += 5) x[b * 32 + 7] *= 10.0f;  // some blocks with outliers

  const std::vector<uint8_t> b8 = encode_rows(TensorType::Q8_0, x.data(), n, 1);
  const std::vector<uint8_t> b4 = encode_rows(TensorType::Q4_0, x.data(), n, 1);
  ASSERT_EQ(b8.size(), size_t(n / 32 * 34));
  ASSERT_EQ(b4.size(), size_t(n / 32 * 18));
  std::vector<float> d8(n), d4(n);
  decode_to_f32(TensorType::Q8_0, b8.data(), n, d8.data());
  decode_to_f32(TensorType::Q4_0, b4.data(), n, d4.data());
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* k8 = b8.data() + b * 34;
    const uint8_t* k4 = b4.data() + b * 18;
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b * 32 + i]));
    // The f16 scale is the f16 rounding of the fp32 one.
    EXPECT_EQ(scale_bits(k8), f32_to_f16(amax / 127.0f));
    for (int i = 0; i < 32; ++i) {
      const int64_t e = b * 32 + i;
      const float v8 = scale(k8) * float(q8(k8, i));
      const float v4 = scale(k4) * float(q4(k4, i) - 8);
      EXPECT_EQ(d8[e], v8) << e;  // the reader decodes what the formula says
      EXPECT_EQ(d4[e], v4) << e;
      // Codes come from the fp32 scale, values use the f16 one: allow its relative rounding error.
      EXPECT_LE(std::fabs(x[e] - v8), std::fabs(scale(k8)) * 0.5f + amax * 1e-3f) << e;
      EXPECT_LE(std::fabs(x[e] - v4), std::fabs(scale(k4)) * 1.0f + amax * 1e-3f) << e;
      // Q8_0 codes are exactly roundf(x / d_fp32).
      const float d = amax / 127.0f;
      EXPECT_EQ(q8(k8, i), int(std::roundf(x[e] * (d ? 1.0f / d : 0.0f)))) << e;
    }
  }
}

TEST(GgmlQuantize, PlainFloatEncodingsAndTable) {
  const float x[3] = {1.0f, -2.5f, 65504.0f};
  const std::vector<uint8_t> f16 = encode_rows(TensorType::F16, x, 3, 1);
  ASSERT_EQ(f16.size(), 6u);
  EXPECT_EQ(f16[0] | f16[1] << 8, 0x3c00);
  EXPECT_EQ(f16[4] | f16[5] << 8, 0x7bff);
  const std::vector<uint8_t> bf = encode_rows(TensorType::BF16, x, 3, 1);
  EXPECT_EQ(bf[0] | bf[1] << 8, 0x3f80);
  const std::vector<uint8_t> f32 = encode_rows(TensorType::F32, x, 3, 1);
  EXPECT_EQ(std::memcmp(f32.data(), x, 12), 0);
  EXPECT_EQ(ggml_type_from_name("q8_0"), TensorType::Q8_0);
  EXPECT_EQ(ggml_type_from_name("iq4_nl"), TensorType::IQ4_NL);
  EXPECT_THROW(ggml_type_from_name("q4_2"), Error);  // removed from ggml: a name it knows, no encoder
  EXPECT_THROW(ggml_encoded_bytes(TensorType::Q4_0, 48, 1), Error);  // 48 is not a whole number of blocks
  EXPECT_EQ(ggml_encoded_bytes(TensorType::Q4_0, 64, 3), 3u * 2 * 18);
}

}  // namespace
}  // namespace llmpress

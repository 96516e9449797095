// Block quantizers: encode -> decode against formats.md's element formulas (written here
// independently of the decoders), reconstruction error, edge cases, and importance weighting.
// Byte-exactness against ggml itself is checked outside the repository (it needs a llama.cpp build).
#include <cmath>
#include <cstring>
#include <functional>
#include <random>

#include "llmpress/core/error.h"
#include "llmpress/core/half.h"
#include "llmpress/export/ggml_quantize.h"
#include "llmpress/io/tensor_data.h"
#include "test_util.h"

namespace llmpress {
namespace {

const TensorType kBlockTypes[] = {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1,
                                  TensorType::Q8_0, TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K,
                                  TensorType::Q5_K, TensorType::Q6_K};

float h(const uint8_t* p) { return f16_to_f32(uint16_t(p[0] | (p[1] << 8))); }

// Element e of one block by formats.md 2.2 / 2.3 (same fp32 operation order as ggml's decoders).
float formula_element(TensorType type, const uint8_t* b, int e) {
  auto nib = [](const uint8_t* qs, int i) { return i < 16 ? qs[i] & 15 : qs[i - 16] >> 4; };
  auto bit5 = [](const uint8_t* qh, int i) { return (qh[i / 8] >> (i % 8)) & 1; };
  auto two_bit = [](const uint8_t* qs, int i) { return (qs[32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3; };
  auto k4 = [](const uint8_t* s, int j, int& sc, int& m) {
    if (j < 4) {
      sc = s[j] & 63;
      m = s[j + 4] & 63;
    } else {
      sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
      m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
  };
  switch (type) {
    case TensorType::Q4_0: return float(nib(b + 2, e) - 8) * h(b);
    case TensorType::Q4_1: return float(nib(b + 4, e)) * h(b) + h(b + 2);
    case TensorType::Q5_0: return float((nib(b + 6, e) | (bit5(b + 2, e) << 4)) - 16) * h(b);
    case TensorType::Q5_1: return float(nib(b + 8, e) | (bit5(b + 4, e) << 4)) * h(b) + h(b + 2);
    case TensorType::Q8_0: return float(int8_t(b[2 + e])) * h(b);
    case TensorType::Q2_K: {
      const int s = b[e / 16];  // scales[e/16]
      return h(b + 80) * float(s & 15) * float(two_bit(b + 16, e)) - h(b + 82) * float(s >> 4);
    }
    case TensorType::Q3_K: {
      const int j = e / 16;
      const int low = j < 8 ? b[96 + j] & 15 : b[96 + j - 8] >> 4;
      const int sc = (low | (((b[96 + 8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
      const int q = two_bit(b + 32, e) + 4 * ((b[e % 32] >> (e / 32)) & 1) - 4;
      return h(b + 108) * float(sc) * float(q);
    }
    case TensorType::Q4_K:
    case TensorType::Q5_K: {
      int sc, m;
      k4(b + 4, e / 32, sc, m);
      const uint8_t* qs = b + (type == TensorType::Q4_K ? 16 : 48);
      const uint8_t byte = qs[32 * (e / 64) + e % 32];
      int q = (e % 64) < 32 ? byte & 15 : byte >> 4;
      if (type == TensorType::Q5_K) q += 16 * ((b[16 + e % 32] >> (2 * (e / 64) + (e % 64) / 32)) & 1);
      return h(b) * float(sc) * float(q) - h(b + 2) * float(m);
    }
    case TensorType::Q6_K: {
      const int hf = e / 128, r = e % 128, k = r / 32, l = r % 32;
      const uint8_t lo = b[64 * hf + (k % 2) * 32 + l];
      const int q = ((k < 2 ? lo & 15 : lo >> 4) | (((b[128 + 32 * hf + l] >> (2 * k)) & 3) << 4)) - 32;
      return h(b + 208) * float(int8_t(b[192 + e / 16])) * float(q);
    }
    default: break;
  }
  ADD_FAILURE() << "no formula";
  return 0;
}

std::vector<float> decode(TensorType type, const std::vector<uint8_t>& bytes, int64_t n) {
  std::vector<float> out(size_t(n), -1.0f);
  decode_to_f32(type, bytes.data(), n, out.data());
  return out;
}

// Checks decode_to_f32 against the formulas element by element; returns the decoded values.
std::vector<float> check_formula(TensorType type, const std::vector<uint8_t>& bytes, int64_t n) {
  const TensorTypeInfo& info = tensor_type_info(type);
  const std::vector<float> out = decode(type, bytes, n);
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* block = bytes.data() + (i / info.block_elements) * info.block_bytes;
    const float expect = formula_element(type, block, int(i % info.block_elements));
    if (std::memcmp(&expect, &out[size_t(i)], 4) != 0) {
      ADD_FAILURE() << tensor_type_name(type) << " element " << i << ": decoder " << out[size_t(i)] << " formula " << expect;
      break;
    }
  }
  return out;
}

double rel_rmse(const std::vector<float>& x, const std::vector<float>& y) {
  double err = 0, sig = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    err += double(x[i] - y[i]) * double(x[i] - y[i]);
    sig += double(x[i]) * double(x[i]);
  }
  return sig > 0 ? std::sqrt(err / sig) : std::sqrt(err);
}

// Relative RMS error bound on Gaussian data, a generous margin over what each format achieves.
double error_bound(TensorType t) {
  switch (t) {
    case TensorType::Q2_K: return 0.45;
    case TensorType::Q3_K: return 0.25;
    case TensorType::Q4_0: case TensorType::Q4_1: case TensorType::Q4_K: return 0.15;
    case TensorType::Q5_0: case TensorType::Q5_1: case TensorType::Q5_K: return 0.07;
    case TensorType::Q6_K: return 0.04;
    default: return 0.01;
  }
}

std::vector<float> gaussian(int64_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, scale);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = g(rng);
  return x;
}

constexpr int64_t kRow = 512, kRows = 16;  // two super-blocks per row

TEST(GgmlBlocks, RandomDataRoundTripsThroughTheFormulas) {
  for (TensorType type : kBlockTypes) {
    const std::vector<float> x = gaussian(kRow * kRows, 7, 0.02f);
    const std::vector<uint8_t> bytes = encode_rows(type, x.data(), kRow, kRows);
    ASSERT_EQ(bytes.size(), ggml_encoded_bytes(type, kRow, kRows));
    const std::vector<float> y = check_formula(type, bytes, kRow * kRows);
    EXPECT_LT(rel_rmse(x, y), error_bound(type)) << tensor_type_name(type);
  }
}

TEST(GgmlBlocks, AllZeroBlocksDecodeToZero) {
  for (TensorType type : kBlockTypes) {
    const std::vector<float> x(kRow, 0.0f);
    const std::vector<float> y = check_formula(type, encode_rows(type, x.data(), kRow, 1), kRow);
    for (float v : y) ASSERT_EQ(v, 0.0f) << tensor_type_name(type);
  }
}

TEST(GgmlBlocks, ConstantBlocksAreNearlyExact) {
  for (TensorType type : kBlockTypes)
    for (float c : {0.37f, -1.5f}) {
      const std::vector<float> x(kRow, c);
      const std::vector<float> y = check_formula(type, encode_rows(type, x.data(), kRow, 1), kRow);
      for (float v : y) ASSERT_NEAR(v, c, std::fabs(c) * 2e-3) << tensor_type_name(type) << " c=" << c;
    }
}

TEST(GgmlBlocks, NegativeOnlyBlocks) {
  for (TensorType type : kBlockTypes) {
    std::vector<float> x = gaussian(kRow * kRows, 11);
    for (float& v : x) v = -std::fabs(v) - 0.1f;
    const std::vector<float> y = check_formula(type, encode_rows(type, x.data(), kRow, kRows), kRow * kRows);
    EXPECT_LT(rel_rmse(x, y), error_bound(type)) << tensor_type_name(type);
    // Q2_K's 4-bit scale and min codes can push a value slightly above zero (ggml does the same).
    if (type != TensorType::Q2_K)
      for (float v : y) ASSERT_LE(v, 1e-6f) << tensor_type_name(type);
  }
}

TEST(GgmlBlocks, HugeOutliersStayFiniteAndKeepTheirMagnitude) {
  for (TensorType type : kBlockTypes) {
    std::vector<float> x = gaussian(kRow, 13);
    x[5] = 3.0e4f;
    x[300] = -5.0e4f;
    const std::vector<float> y = check_formula(type, encode_rows(type, x.data(), kRow, 1), kRow);
    for (float v : y) ASSERT_TRUE(std::isfinite(v)) << tensor_type_name(type);
    EXPECT_NEAR(y[5], x[5], 0.2 * 3.0e4) << tensor_type_name(type);
    EXPECT_NEAR(y[300], x[300], 0.2 * 5.0e4) << tensor_type_name(type);
  }
}

TEST(GgmlBlocks, RowsMustBeWholeBlocks) {
  std::vector<float> x(300, 1.0f);
  EXPECT_THROW(encode_rows(TensorType::Q4_K, x.data(), 288, 1), Error);  // 288 = 9 * 32, not 256
  EXPECT_NO_THROW(encode_rows(TensorType::Q5_1, x.data(), 288, 1));
  std::vector<float> out(300);
  std::vector<uint8_t> bytes(200);
  EXPECT_THROW(decode_to_f32(TensorType::Q6_K, bytes.data(), 100, out.data()), Error);
}

TEST(GgmlBlocks, TypeNamesAndSizes) {
  EXPECT_EQ(ggml_type_from_name("q4_k"), TensorType::Q4_K);
  EXPECT_EQ(ggml_type_from_name("Q5_1"), TensorType::Q5_1);
  EXPECT_EQ(tensor_bytes(TensorType::Q2_K, 512), 168u);
  EXPECT_EQ(tensor_bytes(TensorType::Q3_K, 256), 110u);
  EXPECT_EQ(tensor_bytes(TensorType::Q5_K, 256), 176u);
  EXPECT_EQ(tensor_bytes(TensorType::Q6_K, 256), 210u);
  EXPECT_EQ(tensor_bytes(TensorType::Q4_1, 64), 40u);
  EXPECT_EQ(tensor_bytes(TensorType::Q5_0, 64), 44u);
}

// ---- importance weighting (formats.md 2.7) -----------------------------------------------

// No importance gives exactly the reference encoder's bytes (llama-quantize without --imatrix).
TEST(GgmlBlocksImportance, NullImportanceIsTheReferenceEncoder) {
  const std::vector<float> x = gaussian(kRow * 4, 17);
  for (TensorType type : kBlockTypes)
    EXPECT_EQ(encode_rows_weighted(type, x.data(), kRow, 4, nullptr), encode_rows(type, x.data(), kRow, 4))
        << tensor_type_name(type);
}

// Q8_0 (and the float types) ignore the importance, as ggml's quantize_q8_0 does.
TEST(GgmlBlocksImportance, Q8_0IgnoresImportance) {
  const std::vector<float> x = gaussian(kRow * 4, 19);
  const std::vector<float> imp = gaussian(kRow, 23);
  std::vector<float> w(imp.size());
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::exp(imp[i]);
  EXPECT_EQ(encode_rows_weighted(TensorType::Q8_0, x.data(), kRow, 4, w.data()),
            encode_rows(TensorType::Q8_0, x.data(), kRow, 4));
}

// Uniform importance is NOT the same as no importance: ggml switches to a different search
// (weights sqrt(sigma2 + x^2) instead of x^2 / av_x + |x| / |x|, least-squares super-block
// scales). What must hold: the result is a comparably good fit (within 10% of the plain error).
TEST(GgmlBlocksImportance, UniformImportanceFitsAsWellAsNone) {
  const std::vector<float> x = gaussian(kRow * kRows, 29, 0.05f);
  const std::vector<float> uniform(kRow, 1.0f);
  for (TensorType type : kBlockTypes) {
    if (type == TensorType::Q8_0) continue;
    const std::vector<uint8_t> plain = encode_rows(type, x.data(), kRow, kRows);
    const std::vector<uint8_t> weighted = encode_rows_weighted(type, x.data(), kRow, kRows, uniform.data());
    EXPECT_NE(plain, weighted) << tensor_type_name(type);
    const double e_plain = rel_rmse(x, check_formula(type, plain, kRow * kRows));
    const double e_weighted = rel_rmse(x, check_formula(type, weighted, kRow * kRows));
    EXPECT_LT(e_weighted, e_plain * 1.1) << tensor_type_name(type);
  }
}

// The point of an imatrix: columns marked important are reproduced more accurately than when
// every column counts the same.
TEST(GgmlBlocksImportance, ImportantColumnsGetSmallerErrors) {
  const std::vector<float> x = gaussian(kRow * 64, 31);
  std::vector<float> uniform(kRow, 1.0f), focused(kRow, 1.0f);
  for (int64_t c = 0; c < kRow; c += 8) focused[size_t(c)] = 100.0f;  // one column in eight
  for (TensorType type : kBlockTypes) {
    if (type == TensorType::Q8_0) continue;
    auto important_error = [&](const std::vector<float>& imp) {
      const std::vector<float> y = decode(type, encode_rows_weighted(type, x.data(), kRow, 64, imp.data()), kRow * 64);
      double err = 0;
      for (size_t i = 0; i < x.size(); i += 8) err += double(x[i] - y[i]) * double(x[i] - y[i]);
      return err;
    };
    EXPECT_LT(important_error(focused), important_error(uniform) * 0.9) << tensor_type_name(type);
  }
}

}  // namespace
}  // namespace llmpress

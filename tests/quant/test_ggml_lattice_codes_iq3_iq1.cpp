// write_nearest_group for IQ3_XXS, IQ3_S, IQ1_S, IQ1_M (ggml_lattice_detail::write_nearest_group_iq3_iq1)
// against brute force: blocks come from ggml's own encoders (importance weighted); every candidate
// code is written by a small field writer of this file (from the decoder's layout, not the code under
// test) and scored on decode_to_f32's values.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "iquant_rows.h"
#include "llmpress/export/ggml_quantize.h"
#include "llmpress/io/tensor_data.h"
#include "llmpress/quant/ggml_lattice_codes_detail.h"

namespace llmpress {
namespace {

using ggml_lattice_detail::write_nearest_group_iq3_iq1;
constexpr int QK = 256;
constexpr TensorType kTypes[] = {TensorType::IQ3_XXS, TensorType::IQ3_S, TensorType::IQ1_S, TensorType::IQ1_M};

// ---- Test-side layout of group g's code (ggml_iquant_blocks.cpp), as bit fields of the block read
// as one little-endian bit string (bit b = bit b % 8 of byte b / 8; all multi-byte fields are LE).
struct Field {
  int bit, width;
};
struct Code {
  int index[2] = {0, 0};  // grid indices (IQ1: index[0] only)
  int signs = 0;          // IQ3_XXS: the 7 stored bits; IQ3_S: the 8 bits (low nibble: first entry)
};

// The fields in a fixed order: IQ3_XXS {idx0, idx1, signs7}; IQ3_S {idx0 low, idx1 low, idx0 bit 8,
// idx1 bit 8, signs}; IQ1_S / IQ1_M {index low, index bits 8-10}.
std::vector<Field> code_fields(TensorType type, int g) {
  const int G = g / 4, l = g % 4;
  switch (type) {
    case TensorType::IQ3_XXS:  // indices [64] @2 (one per 4), per 32 a u32 @66+4G: 7 sign bits per 8 at 7l
      return {{8 * (2 + 8 * G + 2 * l), 8}, {8 * (3 + 8 * G + 2 * l), 8}, {8 * (66 + 4 * G) + 7 * l, 7}};
    case TensorType::IQ3_S: {  // runs k, k+1 of 4; qh[G] @66 bit k; sign byte @74+4G+k/2
      const int k = 2 * l;
      return {{8 * (2 + 8 * G + k), 8}, {8 * (2 + 8 * G + k + 1), 8}, {8 * (66 + G) + k, 1},
              {8 * (66 + G) + k + 1, 1}, {8 * (74 + 4 * G + k / 2), 8}};
    }
    case TensorType::IQ1_S:  // low bytes [32] @2, u16 @34+2G: bits 3l..3l+2
      return {{8 * (2 + 4 * G + l), 8}, {8 * (34 + 2 * G) + 3 * l, 3}};
    case TensorType::IQ1_M:  // low bytes [32] @0, qh nibbles @32+2G+l/2 (bits 0-2 of nibble l % 2)
      return {{8 * (4 * G + l), 8}, {8 * (32 + 2 * G + l / 2) + 4 * (l % 2), 3}};
    default: ADD_FAILURE(); return {};
  }
}

void put(uint8_t* block, Field f, int value) {
  for (int i = 0; i < f.width; ++i) {
    const int b = f.bit + i;
    block[b / 8] = uint8_t((block[b / 8] & ~(1 << (b % 8))) | (((value >> i) & 1) << (b % 8)));
  }
}
int get(const uint8_t* block, Field f) {
  int v = 0;
  for (int i = 0; i < f.width; ++i) v |= ((block[(f.bit + i) / 8] >> ((f.bit + i) % 8)) & 1) << i;
  return v;
}

void write_code(TensorType type, uint8_t* block, int g, const Code& c) {
  const std::vector<Field> f = code_fields(type, g);
  switch (type) {
    case TensorType::IQ3_XXS: put(block, f[0], c.index[0]), put(block, f[1], c.index[1]), put(block, f[2], c.signs); break;
    case TensorType::IQ3_S:
      put(block, f[0], c.index[0] & 255), put(block, f[1], c.index[1] & 255);
      put(block, f[2], c.index[0] >> 8), put(block, f[3], c.index[1] >> 8), put(block, f[4], c.signs);
      break;
    default: put(block, f[0], c.index[0] & 255), put(block, f[1], c.index[0] >> 8); break;
  }
}
Code read_code(TensorType type, const uint8_t* block, int g) {
  const std::vector<Field> f = code_fields(type, g);
  Code c;
  switch (type) {
    case TensorType::IQ3_XXS: c.index[0] = get(block, f[0]), c.index[1] = get(block, f[1]), c.signs = get(block, f[2]); break;
    case TensorType::IQ3_S:
      c.index[0] = get(block, f[0]) | get(block, f[2]) << 8, c.index[1] = get(block, f[1]) | get(block, f[3]) << 8;
      c.signs = get(block, f[4]);
      break;
    default: c.index[0] = get(block, f[0]) | get(block, f[1]) << 8; break;
  }
  return c;
}
// Bits of the block that belong to group g's code.
std::vector<uint8_t> code_mask(TensorType type, int g, size_t bytes) {
  std::vector<uint8_t> mask(bytes, 0);
  for (const Field& f : code_fields(type, g)) put(mask.data(), f, (1 << f.width) - 1);
  return mask;
}

size_t block_bytes(TensorType type) { return size_t(tensor_type_info(type).block_bytes); }

std::vector<float> decode(TensorType type, const uint8_t* block) {
  std::vector<float> out(QK);
  decode_to_f32(type, block, QK, out.data());
  return out;
}
double group_error(const float* values, const float* target, const float* weight) {
  double e = 0;
  for (int j = 0; j < 8; ++j) {
    const double d = double(target[j]) - double(values[j]);
    e += double(weight[j]) * (d * d);
  }
  return e;
}

// ---- Brute force. Returns the least error over every legal code of group g (scales as in `block`)
// and how many codes reach it exactly ('ties').
struct Best {
  double error;
  long ties;
};

// IQ1: every one of the 2048 indices.
Best brute_force_iq1(TensorType type, const uint8_t* block, int g, const float* t, const float* w) {
  std::vector<uint8_t> copy(block, block + block_bytes(type));
  Best best{INFINITY, 0};
  for (int i = 0; i < 2048; ++i) {
    Code c;
    c.index[0] = i;
    write_code(type, copy.data(), g, c);
    const double e = group_error(decode(type, copy.data()).data() + 8 * g, t, w);
    if (e < best.error) best = {e, 1};
    else if (e == best.error) ++best.ties;
  }
  return best;
}

// IQ3: elements 0-3 of a group decode from (first index, their 4 signs), elements 4-7 from (second
// index, their 4 signs); the decoder reads nothing else of the code for them. So the error of a code
// is errA(idx0, SA) + errB(idx1, SB), where SA / SB are the sign patterns the decoded values show, and
// the legal codes are all pairs -- for IQ3_XXS exactly the pairs with parity(SA) == parity(SB) (even
// count of minus signs among 8, the 8th implied). Hence
//     min over legal codes = min_p ( min{errA : parity SA = p} + min{errB : parity SB = p} )
// (IQ3_S has no parity constraint: one class, p = 0), which is an identity of minima over a product
// set, not a heuristic. Each half is enumerated exhaustively through the real decoder: every index
// times every sign pattern of that half (IQ3_XXS half B: 8 stored patterns of bits 4-6, each with the
// first half's stored bits of either parity so that element 7's implied sign takes both values), with
// the other half's fields fixed; the test checks that this leaves the other half's magnitudes
// unchanged and that every (index, pattern) of a half was produced exactly once.
Best brute_force_iq3(TensorType type, const uint8_t* block, int g, const float* t, const float* w) {
  const bool xxs = type == TensorType::IQ3_XXS;
  const int entries = xxs ? 256 : 512;
  std::vector<uint8_t> copy(block, block + block_bytes(type));
  const Code base = read_code(type, block, g);
  const std::vector<float> base_values = decode(type, block);
  double best[2][2] = {{INFINITY, INFINITY}, {INFINITY, INFINITY}};  // [half][parity]
  long ties[2][2] = {{0, 0}, {0, 0}};
  std::vector<int> seen(size_t(2 * entries * 16), 0);
  bool other_half_kept = true;
  for (int half = 0; half < 2; ++half) {
    const int other = 4 * (1 - half);
    for (int idx = 0; idx < entries; ++idx)
      for (int s = 0; s < 16; ++s) {
        Code c = base;
        c.index[half] = idx;
        if (!xxs) {
          c.signs = half == 0 ? (base.signs & 0xf0) | s : (base.signs & 0x0f) | (s << 4);
        } else if (half == 0) {
          c.signs = (base.signs & 0x70) | s;  // elements 0-3: stored bits 0-3
        } else {
          // bits 4-6 from s; bits 0-3 from base, bit 0 toggled when s >= 8: the two parities of bits
          // 0-3 give element 7 both implied signs (its first half's magnitudes stay).
          c.signs = ((base.signs & 0x0f) ^ (s >> 3)) | ((s & 7) << 4);
        }
        write_code(type, copy.data(), g, c);
        const std::vector<float> v = decode(type, copy.data());
        const float* x = v.data() + 8 * g;
        for (int j = 0; j < 4; ++j)
          other_half_kept = other_half_kept && std::fabs(x[other + j]) == std::fabs(base_values[8 * g + other + j]);
        int pattern = 0;
        for (int j = 0; j < 4; ++j) pattern |= std::signbit(x[4 * half + j]) << j;
        ++seen[size_t((half * entries + idx) * 16 + pattern)];
        double e = 0;
        for (int j = 4 * half; j < 4 * half + 4; ++j) {
          const double d = double(t[j]) - double(x[j]);
          e += double(w[j]) * (d * d);
        }
        const int p = xxs ? __builtin_parity(pattern) : 0;
        if (e < best[half][p]) best[half][p] = e, ties[half][p] = 1;
        else if (e == best[half][p]) ++ties[half][p];
      }
  }
  EXPECT_TRUE(other_half_kept) << "a half's fields changed the other half's magnitudes";
  long missed = 0;
  for (int n : seen) missed += n != 1;
  EXPECT_EQ(missed, 0) << "(index, signs) of a half not enumerated exactly once";
  Best out{INFINITY, 0};
  for (int p = 0; p < (xxs ? 2 : 1); ++p) {
    const double e = best[0][p] + best[1][p];
    if (e < out.error) out = {e, ties[0][p] * ties[1][p]};
    else if (e == out.error) out.ties += ties[0][p] * ties[1][p];
  }
  return out;
}

Best brute_force(TensorType type, const uint8_t* block, int g, const float* t, const float* w) {
  if (type == TensorType::IQ3_XXS || type == TensorType::IQ3_S) return brute_force_iq3(type, block, g, t, w);
  return brute_force_iq1(type, block, g, t, w);
}

// Blocks of ggml's weighted encoder: RowGenerator rows of every kind, plus an all-zero block (d = 0,
// where every code decodes to zeros).
std::vector<uint8_t> encoded_blocks(TensorType type, int rows) {
  test::RowGenerator gen(11);
  std::vector<uint8_t> out;
  for (int i = 0; i < rows; ++i) {
    std::vector<float> x = gen.row(i, 512);
    if (i == rows - 1) std::fill(x.begin(), x.begin() + QK, 0.0f);
    const std::vector<float> imp = gen.importance(512);
    const std::vector<uint8_t> b = encode_rows_weighted(type, x.data(), 512, 1, imp.data());
    out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

// A target for group g of block `values`: near the block's values, far away, zeros, block-scale
// noise, or a mix of exact zeros and large values.
void make_target(test::RowGenerator& gen, int kind, const std::vector<float>& values, int g, float* t, float* w) {
  float amax = 0;
  for (float v : values) amax = std::fmax(amax, std::fabs(v));
  const float s = amax > 0 ? amax : 0.01f;
  for (int j = 0; j < 8; ++j) {
    const float u = gen.uniform();
    switch (kind) {
      case 0: t[j] = values[size_t(8 * g + j)] + 0.15f * s * gen.gaussian(); break;
      case 1: t[j] = (u < 0.5f ? -1.0f : 1.0f) * s * (3.0f + 20.0f * gen.uniform()); break;
      case 2: t[j] = 0.0f; break;
      case 3: t[j] = 0.5f * s * gen.gaussian(); break;
      default: t[j] = u < 0.4f ? 0.0f : (u < 0.7f ? -0.0f : s * 4.0f * gen.gaussian()); break;
    }
    w[j] = std::pow(10.0f, 4.0f * gen.uniform() - 2.0f);  // 0.01 .. 100
  }
}

// (1) only the group's code bits and values change; (2) the error is the brute-force minimum.
TEST(LatticeCodesIq3Iq1, NearestGroupIsExactAndTouchesOnlyItsCode) {
  for (TensorType type : kTypes) {
    SCOPED_TRACE(tensor_type_name(type));
    const size_t nb = block_bytes(type);
    const std::vector<uint8_t> blocks = encoded_blocks(type, 7);
    const int nblocks = int(blocks.size() / nb);
    const int groups = type == TensorType::IQ3_S ? 100 : type == TensorType::IQ3_XXS ? 150 : 300;
    test::RowGenerator gen(100 + uint64_t(type));
    for (int n = 0; n < groups; ++n) {
      const int b = int(gen.next() % uint64_t(nblocks)), g = int(gen.next() % 32), kind = n % 5;
      SCOPED_TRACE("block " + std::to_string(b) + " group " + std::to_string(g) + " kind " + std::to_string(kind));
      const uint8_t* orig = blocks.data() + size_t(b) * nb;
      const std::vector<float> before = decode(type, orig);
      float t[8], w[8];
      make_target(gen, kind, before, g, t, w);
      std::vector<uint8_t> block(orig, orig + nb);
      write_nearest_group_iq3_iq1(type, block.data(), g, t, w);
      const std::vector<uint8_t> mask = code_mask(type, g, nb);
      for (size_t i = 0; i < nb; ++i) ASSERT_EQ((block[i] ^ orig[i]) & ~mask[i], 0) << "byte " << i;
      const std::vector<float> after = decode(type, block.data());
      for (int e = 0; e < QK; ++e)
        if (e / 8 != g) ASSERT_EQ(std::memcmp(&after[size_t(e)], &before[size_t(e)], 4), 0) << "element " << e;
      const double achieved = group_error(after.data() + 8 * g, t, w);
      const Best best = brute_force(type, orig, g, t, w);
      // Equal up to the order of the double additions (the exact minimum is attained by some code).
      const double tol = 1e-12 * best.error + 1e-300;
      EXPECT_LE(achieved, best.error + tol);
      EXPECT_GE(achieved, best.error - tol);
    }
  }
}

// (3) Target = the group's own values, weights 1: the original code comes back, byte for byte, when
// no other code decodes to the same values (brute force count; it fails only where d = 0).
TEST(LatticeCodesIq3Iq1, OwnValuesReproduceTheBlock) {
  for (TensorType type : kTypes) {
    SCOPED_TRACE(tensor_type_name(type));
    const size_t nb = block_bytes(type);
    const std::vector<uint8_t> blocks = encoded_blocks(type, 7);
    const int nblocks = int(blocks.size() / nb);
    const float ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    int checked = 0, not_unique = 0;
    for (int b = 0; b < nblocks; ++b) {
      const uint8_t* orig = blocks.data() + size_t(b) * nb;
      const std::vector<float> values = decode(type, orig);
      bool all_zero = true;
      for (float v : values) all_zero = all_zero && v == 0.0f;
      for (int g = 0; g < 32; ++g) {
        const float* t = values.data() + 8 * g;
        std::vector<uint8_t> block(orig, orig + nb);
        write_nearest_group_iq3_iq1(type, block.data(), g, t, ones);
        const std::vector<float> after = decode(type, block.data());
        EXPECT_EQ(group_error(after.data() + 8 * g, t, ones), 0.0) << "block " << b << " group " << g;
        // Uniqueness by brute force on a few groups per block (and every group of the zero block),
        // otherwise by its characterization checked here: unique iff the block's scale is nonzero.
        bool unique = !all_zero;
        if (g % 11 == 0 || all_zero) {
          const Best best = brute_force(type, orig, g, t, ones);
          EXPECT_EQ(best.error, 0.0);
          EXPECT_EQ(best.ties == 1, unique) << "block " << b << " group " << g << " ties " << best.ties;
          unique = best.ties == 1;
        }
        if (unique) {
          EXPECT_EQ(block, std::vector<uint8_t>(orig, orig + nb)) << "block " << b << " group " << g;
          ++checked;
        } else {
          ++not_unique;
          const std::vector<uint8_t> mask = code_mask(type, g, nb);
          for (size_t i = 0; i < nb; ++i) EXPECT_EQ((block[i] ^ orig[i]) & ~mask[i], 0);
        }
      }
    }
    EXPECT_GT(checked, 32 * (nblocks - 2));
    EXPECT_EQ(not_unique, 32);  // the zero block
  }
}

TEST(LatticeCodesIq3Iq1, RejectsOtherTypesAndGroups) {
  std::vector<uint8_t> block(128, 0);
  const float t[8] = {}, w[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  EXPECT_ANY_THROW(write_nearest_group_iq3_iq1(TensorType::IQ2_XXS, block.data(), 0, t, w));
  EXPECT_ANY_THROW(write_nearest_group_iq3_iq1(TensorType::Q4_K, block.data(), 0, t, w));
  EXPECT_ANY_THROW(write_nearest_group_iq3_iq1(TensorType::IQ3_S, block.data(), 32, t, w));
  EXPECT_ANY_THROW(write_nearest_group_iq3_iq1(TensorType::IQ1_S, block.data(), -1, t, w));
}

// Throughput, printed (not asserted): groups re-coded per second.
TEST(LatticeCodesIq3Iq1, Speed) {
  for (TensorType type : kTypes) {
    const size_t nb = block_bytes(type);
    const std::vector<uint8_t> blocks = encoded_blocks(type, 6);
    const int nblocks = int(blocks.size() / nb);
    std::vector<uint8_t> work = blocks;
    test::RowGenerator gen(7);
    std::vector<float> targets(size_t(QK) * size_t(nblocks)), weights(targets.size());
    for (size_t i = 0; i < targets.size(); ++i) targets[i] = 0.03f * gen.gaussian(), weights[i] = 0.1f + gen.uniform();
    const int rounds = 30;
    const auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < rounds; ++r)
      for (int b = 0; b < nblocks; ++b)
        for (int g = 0; g < 32; ++g)
          write_nearest_group_iq3_iq1(type, work.data() + size_t(b) * nb, g, &targets[size_t(b * QK + 8 * g)],
                                      &weights[size_t(b * QK + 8 * g)]);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("[ speed    ] %s: %.0f groups/s\n", tensor_type_name(type).c_str(), rounds * nblocks * 32 / s);
  }
}

}  // namespace
}  // namespace llmpress

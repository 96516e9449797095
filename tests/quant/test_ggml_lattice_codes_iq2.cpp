// write_nearest_group for IQ2_XXS, IQ2_XS and IQ2_S (ggml_lattice_detail::write_nearest_group_iq2)
// against brute force. Blocks come from ggml's encoder (rows of iquant_rows.h with importance) and from
// random bytes (negative super-block scales, codes no encoder emits). Candidates are written into a copy
// of the block by the small field writer below (taken from the decoder's layout, independent of the code
// under test) and decoded with decode_to_f32; the error of a candidate is the definition of "nearest":
// sum over j in order, in double, of w_j * (t_j - v_j)^2, so "no candidate is better" is checked exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "iquant_rows.h"
#include "llmpress/core/error.h"
#include "llmpress/export/ggml_quantize.h"
#include "llmpress/io/tensor_data.h"
#include "llmpress/quant/ggml_iquant_tables.h"
#include "llmpress/quant/ggml_lattice_codes_detail.h"

namespace llmpress {
namespace {

using ggml_lattice_detail::write_nearest_group_iq2;

constexpr int kBlock = 256;

struct Iq2Type {
  TensorType type;
  int block_bytes;
  int grid_size;
  int sign_codes;  // values of the stored sign field: 128 (7 bits, even parity implied) or 256
};
const Iq2Type kTypes[] = {{TensorType::IQ2_XXS, 66, 256, 128},
                          {TensorType::IQ2_XS, 74, 512, 128},
                          {TensorType::IQ2_S, 82, 1024, 256}};

// One bit field of a block: `bits` bits from bit `offset` (bit k of byte b is bit 8b + k), holding
// bits `shift`.. of the value.
struct Field {
  int offset, bits, shift;
};

// The fields of group g's code (grid index, then sign field), from ggml_iquant_blocks.cpp's layouts:
// IQ2_XXS: index byte 2+8G+l, sign index bits 7l.. of the u32 at 2+8G+4 (G = g/4, l = g%4);
// IQ2_XS:  the u16 at 2+2g, index bits 0-8, sign index bits 9-15;
// IQ2_S:   index low byte 2+g, index bits 8-9 at bits 2l of byte 66+G, sign byte 34+g.
std::vector<Field> index_fields(TensorType type, int g) {
  const int G = g / 4, l = g % 4;
  if (type == TensorType::IQ2_XXS) return {{8 * (2 + 8 * G + l), 8, 0}};
  if (type == TensorType::IQ2_XS) return {{8 * (2 + 2 * g), 9, 0}};
  return {{8 * (2 + g), 8, 0}, {8 * (66 + G) + 2 * l, 2, 8}};
}
Field sign_field(TensorType type, int g) {
  const int G = g / 4, l = g % 4;
  if (type == TensorType::IQ2_XXS) return {8 * (2 + 8 * G + 4) + 7 * l, 7, 0};
  if (type == TensorType::IQ2_XS) return {8 * (2 + 2 * g) + 9, 7, 0};
  return {8 * (34 + g), 8, 0};
}

void put_field(uint8_t* block, const Field& f, int value) {
  for (int k = 0; k < f.bits; ++k) {
    const int bit = f.offset + k;
    const uint8_t mask = uint8_t(1u << (bit % 8));
    if ((value >> (f.shift + k)) & 1)
      block[bit / 8] |= mask;
    else
      block[bit / 8] &= uint8_t(~mask);
  }
}

void put_code(TensorType type, uint8_t* block, int g, int index, int sign_code) {
  for (const Field& f : index_fields(type, g)) put_field(block, f, index);
  put_field(block, sign_field(type, g), sign_code);
}

// Bytes with group g's code bits set.
std::vector<uint8_t> code_mask(const Iq2Type& t, int g) {
  std::vector<uint8_t> mask(size_t(t.block_bytes), 0);
  put_code(t.type, mask.data(), g, 0xffff, 0xff);
  return mask;
}

// The definition of the error being minimized.
double group_error(const float* target, const float* weight, const float* value) {
  double err = 0;
  for (int j = 0; j < 8; ++j) {
    const double e = double(target[j]) - double(value[j]);
    err += double(weight[j]) * (e * e);
  }
  return err;
}

std::vector<float> decode(const Iq2Type& t, const uint8_t* block, int blocks = 1) {
  std::vector<float> out(size_t(blocks) * kBlock);
  decode_to_f32(t.type, block, int64_t(blocks) * kBlock, out.data());
  return out;
}

// Every group's values with every grid entry, all signs plus and all minus (sign field 0 and its
// last value, whose pattern is all eight minus signs), decoded from the block with that code in all
// 32 groups: plus[i][e], minus[i][e].
struct GridValues {
  std::vector<std::vector<float>> plus, minus;
};
GridValues grid_values(const Iq2Type& t, const std::vector<uint8_t>& block) {
  GridValues v;
  for (int i = 0; i < t.grid_size; ++i) {
    std::vector<uint8_t> b = block, c = block;
    for (int g = 0; g < 32; ++g) {
      put_code(t.type, b.data(), g, i, 0);
      put_code(t.type, c.data(), g, i, t.sign_codes - 1);
    }
    v.plus.push_back(decode(t, b.data()));
    v.minus.push_back(decode(t, c.data()));
  }
  return v;
}

// The least error of any legal code of group g, from the decoded values of grid_values (a legal sign
// pattern: all 256 for IQ2_S, kIq2Signs' 128 even ones otherwise).
double best_error_from_values(const Iq2Type& t, const GridValues& v, int g, const float* target, const float* weight) {
  double best = HUGE_VAL;
  float value[8];
  for (int i = 0; i < t.grid_size; ++i) {
    const float* p = &v.plus[size_t(i)][size_t(8 * g)];
    const float* m = &v.minus[size_t(i)][size_t(8 * g)];
    for (int s = 0; s < t.sign_codes; ++s) {
      const int pattern = t.sign_codes == 128 ? ggml_tables::kIq2Signs[s] : s;
      for (int j = 0; j < 8; ++j) value[j] = (pattern >> j) & 1 ? m[j] : p[j];
      best = std::fmin(best, group_error(target, weight, value));
    }
  }
  return best;
}

// The same minimum with every candidate literally written into the block and decoded.
double best_error_by_decoding(const Iq2Type& t, const std::vector<uint8_t>& block, int g, const float* target,
                              const float* weight) {
  double best = HUGE_VAL;
  std::vector<uint8_t> batch(size_t(t.sign_codes) * size_t(t.block_bytes));
  std::vector<float> values(size_t(t.sign_codes) * kBlock);
  for (int i = 0; i < t.grid_size; ++i) {
    for (int s = 0; s < t.sign_codes; ++s) {
      uint8_t* b = &batch[size_t(s) * size_t(t.block_bytes)];
      std::memcpy(b, block.data(), block.size());
      put_code(t.type, b, g, i, s);
    }
    decode_to_f32(t.type, batch.data(), int64_t(t.sign_codes) * kBlock, values.data());
    for (int s = 0; s < t.sign_codes; ++s)
      best = std::fmin(best, group_error(target, weight, &values[size_t(s) * kBlock + size_t(8 * g)]));
  }
  return best;
}

// Blocks to re-code: ggml's encoding of generated rows (all six kinds, with importance), and random
// bytes whose f16 scale is finite (either sign).
std::vector<std::vector<uint8_t>> test_blocks(const Iq2Type& t, test::RowGenerator& gen) {
  std::vector<std::vector<uint8_t>> blocks;
  for (int64_t r = 0; r < 6; ++r) {
    const std::vector<float> x = gen.row(r, 512);
    const std::vector<float> w = gen.importance(512);
    const std::vector<uint8_t> bytes = encode_rows_weighted(t.type, x.data(), 512, 1, w.data());
    for (int b = 0; b < 2; ++b)
      blocks.emplace_back(bytes.begin() + b * t.block_bytes, bytes.begin() + (b + 1) * t.block_bytes);
  }
  for (int r = 0; r < 2; ++r) {
    std::vector<uint8_t> b(size_t(t.block_bytes));
    for (uint8_t& byte : b) byte = uint8_t(gen.next());
    b[1] = uint8_t((b[1] & 0x03) | 0x20 | (r << 7));  // f16 exponent 8: |d| in [1/128, 1/64), d < 0 for r = 1
    blocks.push_back(b);
  }
  return blocks;
}

// A target for group g of a block whose decoded values are `v`: case 0 near them, 1 far away, 2 zero,
// 3 near them with some elements exactly zero, 4 near them but up to three elements 2^27 times farther
// (their error swamps the rest to the last few bits, so many entries tie up to rounding and the order
// of summation decides: about one such group in ten catches a search that sums in another order).
void make_target(int kind, const float* v, float spread, test::RowGenerator& gen, float* target) {
  const int far0 = int(gen.next() % 8), far1 = int(gen.next() % 8), far2 = int(gen.next() % 8);
  for (int j = 0; j < 8; ++j) {
    if (kind == 0 || kind == 3 || kind == 4) target[j] = v[j] + 0.4f * spread * gen.gaussian();
    if (kind == 1) target[j] = 20.0f * spread * gen.gaussian();
    if (kind == 2 || (kind == 3 && gen.uniform() < 0.4f)) target[j] = 0.0f;
    if (kind == 4 && (j == far0 || j == far1 || j == far2)) target[j] = std::ldexp(spread, 27) * gen.gaussian();
  }
}
// Weights: kind 0 in [0.1, 2.1), 1 spread over 2^-20 .. 2^20, 2 over 2^-60 .. 2^60 (so that the
// smallest terms vanish in the rounding of the largest and the order of summation decides near-ties).
void make_weight(int kind, test::RowGenerator& gen, float* weight) {
  const int range = kind == 1 ? 20 : 60;
  for (int j = 0; j < 8; ++j)
    weight[j] = kind == 0 ? 0.1f + 2.0f * gen.uniform()
                          : std::ldexp(1.0f + gen.uniform(), int(gen.next() % uint64_t(2 * range + 1)) - range);
}

float group_spread(const float* v) {
  float s = 0;
  for (int j = 0; j < 8; ++j) s = std::fmax(s, std::fabs(v[j]));
  return s > 0 ? s : 0.01f;
}

// (1) only group g's elements and code bits change, (2) nothing legal is better (`best` from brute
// force). Returns the achieved error.
double check_write(const Iq2Type& t, const std::vector<uint8_t>& block, const std::vector<float>& before, int g,
                   const float* target, const float* weight, double best, const char* what) {
  std::vector<uint8_t> b = block;
  write_nearest_group_iq2(t.type, b.data(), g, target, weight);
  const std::vector<uint8_t> mask = code_mask(t, g);
  for (int k = 0; k < t.block_bytes; ++k)
    EXPECT_EQ(b[size_t(k)] & ~mask[size_t(k)], block[size_t(k)] & ~mask[size_t(k)]) << what << " byte " << k;
  const std::vector<float> after = decode(t, b.data());
  for (int e = 0; e < kBlock; ++e)
    if (e / 8 != g) EXPECT_EQ(std::memcmp(&after[size_t(e)], &before[size_t(e)], 4), 0) << what << " element " << e;
  const double achieved = group_error(target, weight, &after[size_t(8 * g)]);
  EXPECT_LE(achieved, best) << what;
  return achieved;
}

TEST(LatticeCodesIq2, NearestGroupBeatsEveryCandidate) {
  test::RowGenerator gen(21);
  for (const Iq2Type& t : kTypes) {
    const std::string name = tensor_type_name(t.type);
    const std::vector<std::vector<uint8_t>> blocks = test_blocks(t, gen);
    int written = 0;
    for (size_t bi = 0; bi < blocks.size(); ++bi) {
      const std::vector<uint8_t>& block = blocks[bi];
      const std::vector<float> before = decode(t, block.data());
      const GridValues values = grid_values(t, block);
      // Fewer groups for the larger grids (the brute force is grid_size * sign_codes per group).
      const int groups = t.grid_size == 1024 ? 5 : t.grid_size == 512 ? 10 : 16;
      for (int n = 0; n < groups; ++n) {
        const int g = int(gen.next() % 32);
        const float* v = &before[size_t(8 * g)];
        for (int kind = 0; kind < 4; ++kind) {
          float target[8], weight[8];
          make_target(kind, v, group_spread(v), gen, target);
          make_weight(n % 3, gen, weight);
          const std::string what = name + " block " + std::to_string(bi) + " group " + std::to_string(g) +
                                   " target kind " + std::to_string(kind);
          const double best = best_error_from_values(t, values, g, target, weight);
          check_write(t, block, before, g, target, weight, best, what.c_str());
          ++written;
        }
      }
    }
    EXPECT_GT(written, 100) << name;
  }
}

// As above with every candidate written into the block and decoded, on fewer groups.
TEST(LatticeCodesIq2, NearestGroupBeatsEveryDecodedCandidate) {
  test::RowGenerator gen(22);
  for (const Iq2Type& t : kTypes) {
    const std::string name = tensor_type_name(t.type);
    const std::vector<std::vector<uint8_t>> blocks = test_blocks(t, gen);
    const int cases = t.grid_size == 1024 ? 3 : t.grid_size == 512 ? 8 : 16;
    for (int n = 0; n < cases; ++n) {
      const size_t bi = size_t(n * 5) % blocks.size();
      const std::vector<uint8_t>& block = blocks[bi];
      const std::vector<float> before = decode(t, block.data());
      const int g = int(gen.next() % 32);
      float target[8], weight[8];
      make_target(n % 4, &before[size_t(8 * g)], group_spread(&before[size_t(8 * g)]), gen, target);
      make_weight(n % 3, gen, weight);
      const std::string what = name + " block " + std::to_string(bi) + " group " + std::to_string(g);
      const double best = best_error_by_decoding(t, block, g, target, weight);
      const double achieved = check_write(t, block, before, g, target, weight, best, what.c_str());
      EXPECT_EQ(achieved, best) << what;  // the chosen code is itself a candidate
    }
  }
}

// Exactly the least error as defined (order of summation included) where rounding decides.
TEST(LatticeCodesIq2, NearestGroupIsExactUnderRounding) {
  test::RowGenerator gen(24);
  for (const Iq2Type& t : kTypes) {
    const std::string name = tensor_type_name(t.type);
    const std::vector<std::vector<uint8_t>> blocks = test_blocks(t, gen);
    const int groups = t.grid_size == 1024 ? 8 : 32;
    for (size_t bi = 0; bi < blocks.size(); ++bi) {
      const std::vector<uint8_t>& block = blocks[bi];
      const std::vector<float> before = decode(t, block.data());
      const GridValues values = grid_values(t, block);
      for (int n = 0; n < groups; ++n) {
        const int g = int(gen.next() % 32);
        const float* v = &before[size_t(8 * g)];
        float target[8], weight[8];
        make_target(4, v, group_spread(v), gen, target);
        make_weight(0, gen, weight);
        const std::string what = name + " block " + std::to_string(bi) + " group " + std::to_string(g);
        check_write(t, block, before, g, target, weight, best_error_from_values(t, values, g, target, weight),
                    what.c_str());
      }
    }
  }
}

// (3) With the decoded values as target, the encoder's own code comes back, byte for byte, wherever
// that point is the only code decoding to those values (no zero value, one grid entry with those
// magnitudes).
TEST(LatticeCodesIq2, EncoderCodesAreFixedPoints) {
  test::RowGenerator gen(23);
  for (const Iq2Type& t : kTypes) {
    const std::string name = tensor_type_name(t.type);
    const std::vector<std::vector<uint8_t>> blocks = test_blocks(t, gen);
    int unique = 0;
    for (size_t bi = 0; bi < blocks.size(); ++bi) {
      const std::vector<uint8_t>& block = blocks[bi];
      const std::vector<float> before = decode(t, block.data());
      const GridValues values = grid_values(t, block);
      const float ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
      for (int g = 0; g < 32; ++g) {
        const float* v = &before[size_t(8 * g)];
        bool nonzero = true;
        for (int j = 0; j < 8; ++j) nonzero = nonzero && v[j] != 0.0f;
        int entries = 0;
        for (int i = 0; i < t.grid_size; ++i) {
          bool same = true;
          const float* p = &values.plus[size_t(i)][size_t(8 * g)];
          for (int j = 0; j < 8; ++j) same = same && std::fabs(p[j]) == std::fabs(v[j]);
          entries += same;
        }
        ASSERT_GE(entries, 1) << name << " block " << bi << " group " << g;
        if (!nonzero || entries != 1) continue;
        ++unique;
        std::vector<uint8_t> b = block;
        write_nearest_group_iq2(t.type, b.data(), g, v, ones);
        EXPECT_EQ(b, block) << name << " block " << bi << " group " << g;
      }
    }
    EXPECT_GT(unique, 350) << name;  // of 14 * 32 groups
  }
}

TEST(LatticeCodesIq2, RefusesOtherTypesAndGroups) {
  std::vector<uint8_t> block(110, 0);
  const float t[8] = {}, w[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  EXPECT_THROW(write_nearest_group_iq2(TensorType::IQ3_S, block.data(), 0, t, w), Error);
  EXPECT_THROW(write_nearest_group_iq2(TensorType::IQ2_S, block.data(), 32, t, w), Error);
  EXPECT_THROW(write_nearest_group_iq2(TensorType::IQ2_XS, block.data(), -1, t, w), Error);
}

}  // namespace
}  // namespace llmpress

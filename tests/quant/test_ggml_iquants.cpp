// i-quant and ternary decoders against ggml itself: fixtures/ggml_iquants/<TYPE>.bin hold blocks that
// ggml produced and the floats ggml's dequantize_row_* made of them; ours must give the same floats
// bit for bit. The grid tables are also checked for the structure of the format.
//
// How the fixtures were made (throwaway program outside the repository, linked with libggml-base of
// llama.cpp c392e5094deaf2d1a7c18683214f007fad3fe42b, built -DGGML_NATIVE=OFF): per type, four
// 256-element cases (IQ4_NL: 8 blocks of 32): (1) a Gaussian row (sigma 0.02) and (2) row 7 of
// gutenberg-dev-llama-5m's model.layers.1.mlp.down_proj.weight (first 256 columns), both through
// ggml_quantize_chunk with a random importance vector in [0.1, 2]; (3) row 3 of layers.0 q_proj without
// an importance vector (with it for IQ1_S/IQ2_XXS/IQ2_XS, which require one); (4) random bytes
// (redrawn until ggml's floats are finite), which reach every bit field, also codes no quantizer
// emits. The floats are ggml_get_type_traits(type)->to_float of those bytes.
// File layout (little-endian): u32 magic "LLIQ", u32 ggml type id, u32 cases, u32 elements per case,
// then every case's block bytes, then every case's floats.
#include <gtest/gtest.h>

#include <algorithm>
#include <bitset>
#include <cstring>
#include <iterator>
#include <set>

#include "iquant_fixtures.h"
#include "llmpress/core/error.h"
#include "llmpress/export/ggml_quantize.h"
#include "llmpress/io/tensor_data.h"
#include "llmpress/quant/ggml_iquant_tables.h"

namespace llmpress {
namespace {

using test::kIquantGgmlTypes;
using test::read_iquant_fixture;

TEST(GgmlIquant, DecodersMatchGgmlBitForBit) {
  for (TensorType type : kIquantGgmlTypes) {
    const std::string name = tensor_type_name(type);
    const test::IquantFixture f = read_iquant_fixture(type);
    if (f.file.empty()) continue;
    const int64_t n = f.cases * f.per_case;
    std::vector<float> ours(size_t(n), -12345.0f);
    decode_to_f32(type, f.bytes(0), n, ours.data());  // all cases in one call: exercises the block stride
    int64_t mismatches = 0, nonzero = 0;
    for (int64_t c = 0; c < f.cases; ++c) {
      const std::vector<float> want = f.floats(c);
      for (int64_t i = 0; i < f.per_case; ++i) {
        const float got = ours[size_t(c * f.per_case + i)];
        if (std::memcmp(&want[size_t(i)], &got, 4) != 0 && mismatches++ < 5)
          ADD_FAILURE() << name << " case " << c << " element " << i << ": ggml " << want[size_t(i)] << ", llmpress "
                        << got;
        nonzero += want[size_t(i)] != 0.0f;
      }
    }
    EXPECT_EQ(mismatches, 0) << name;
    EXPECT_GT(nonzero, n / 5) << name << ": the fixture decodes to mostly zeros, it would not catch much";
  }
}

// A single flipped bit anywhere in a block must reach some element (every bit of these formats
// carries information), so the decoders read every field.
TEST(GgmlIquant, EveryBitOfABlockMatters) {
  for (TensorType type : kIquantGgmlTypes) {
    const TensorTypeInfo& info = tensor_type_info(type);
    const test::IquantFixture f = read_iquant_fixture(type);
    if (f.file.empty()) continue;
    // The random-bytes case (the last one): all its codes are in play.
    std::vector<uint8_t> block(f.bytes(f.cases - 1), f.bytes(f.cases - 1) + info.block_bytes);
    std::vector<float> base(size_t(info.block_elements)), flipped(base.size());
    decode_to_f32(type, block.data(), info.block_elements, base.data());
    int unused = 0;
    for (int bit = 0; bit < 8 * int(info.block_bytes); ++bit) {
      block[size_t(bit / 8)] ^= uint8_t(1 << (bit % 8));
      decode_to_f32(type, block.data(), info.block_elements, flipped.data());
      block[size_t(bit / 8)] ^= uint8_t(1 << (bit % 8));
      if (std::memcmp(base.data(), flipped.data(), base.size() * 4) == 0) ++unused;
    }
    // TQ1_0: a base-3 digit byte has 256 codes for 243 values, so a few flips land on the same value.
    EXPECT_LE(unused, type == TensorType::TQ1_0 ? 16 : 0) << tensor_type_name(type);
  }
}

TEST(GgmlIquant, TablesHaveTheFormatsStructure) {
  using namespace ggml_tables;
  for (int i = 0; i < 8; ++i) EXPECT_EQ(kIq2SignMask[i], 1 << i);
  for (int i = 0; i < 128; ++i) {
    EXPECT_EQ(kIq2Signs[i] & 127, i);                        // the 7 stored signs
    EXPECT_EQ(std::bitset<8>(kIq2Signs[i]).count() % 2, 0u);  // and an 8th for even parity
  }
  auto check_grid = [](const auto& grid, int per_entry, std::vector<int> allowed, const char* what) {
    std::set<uint64_t> distinct;
    for (uint64_t entry : grid) {
      distinct.insert(entry);
      for (int j = 0; j < per_entry; ++j) {
        const int v = grid_byte(entry, j);
        ASSERT_NE(std::find(allowed.begin(), allowed.end(), v), allowed.end()) << what << " value " << v;
      }
    }
    EXPECT_EQ(distinct.size(), std::size(grid)) << what << " has repeated entries";
  };
  check_grid(kIq2xxsGrid, 8, {8, 25, 43}, "iq2xxs_grid");
  check_grid(kIq2xsGrid, 8, {8, 25, 43}, "iq2xs_grid");
  check_grid(kIq2sGrid, 8, {8, 25, 43}, "iq2s_grid");
  check_grid(kIq3xxsGrid, 4, {4, 12, 20, 28, 36, 44, 52, 62}, "iq3xxs_grid");
  check_grid(kIq3sGrid, 4, {1, 3, 5, 7, 9, 11, 13, 15}, "iq3s_grid");
  check_grid(kIq1sGrid, 8, {0xff, 0, 1}, "iq1s_grid");
  EXPECT_EQ(kIq4nlValues[0], -127);
  EXPECT_EQ(kIq4nlValues[15], 113);
  for (int i = 1; i < 16; ++i) EXPECT_LT(kIq4nlValues[i - 1], kIq4nlValues[i]);
}

// Every type llmpress reads it also writes (encoders: test_ggml_iquant_encoders.cpp); the three types
// ggml quantizes only with an importance vector refuse without one, and say what to do.
TEST(GgmlIquant, EveryReadTypeIsWritableByName) {
  for (TensorType type : kIquantGgmlTypes) {
    const std::string name = tensor_type_name(type);
    EXPECT_TRUE(ggml_can_encode(type)) << name;
    EXPECT_EQ(ggml_type_from_name(name), type) << name;
    const bool needs = type == TensorType::IQ2_XXS || type == TensorType::IQ2_XS || type == TensorType::IQ1_S;
    EXPECT_EQ(ggml_needs_importance(type), needs) << name;
    const std::vector<float> row(256, 0.5f);
    if (!needs) continue;
    try {
      encode_rows(type, row.data(), 256, 1);
      ADD_FAILURE() << name << " encoded without importance";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name + " needs importance weights"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("--calib"), std::string::npos) << e.what();
    }
  }
  try {
    encode_rows(TensorType(99), nullptr, 32, 1);
    ADD_FAILURE() << "encoded type 99";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown ggml type id 99"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace llmpress

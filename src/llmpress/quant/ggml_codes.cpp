#include "llmpress/quant/ggml_codes.h"

#include <cstring>
#include <vector>

#include "llmpress/core/error.h"
#include "llmpress/export/ggml_quantize.h"
#include "llmpress/quant/ggml_iquant_tables.h"

namespace llmpress {
namespace {

// A code is split into a low and an optional high bit field (the layouts of formats.md 2.2/2.3).
struct BitField {
  int byte = 0, shift = 0, width = 0;
};
struct CodeFields {
  BitField low, high;
};

CodeFields code_fields(TensorType type, int e) {
  const auto nibble = [](int base, int e) { return BitField{base + e % 16, e < 16 ? 0 : 4, 4}; };
  const auto two_bit = [](int base, int e) { return BitField{base + 32 * (e / 128) + e % 32, 2 * ((e % 128) / 32), 2}; };
  const auto k_nibble = [](int base, int e) { return BitField{base + 32 * (e / 64) + e % 32, e % 64 < 32 ? 0 : 4, 4}; };
  switch (type) {
    case TensorType::Q4_0: return {nibble(2, e), {}};
    case TensorType::Q4_1: return {nibble(4, e), {}};
    case TensorType::Q5_0: return {nibble(6, e), {2 + e / 8, e % 8, 1}};
    case TensorType::Q5_1: return {nibble(8, e), {4 + e / 8, e % 8, 1}};
    case TensorType::Q8_0: return {{2 + e, 0, 8}, {}};
    case TensorType::Q2_K: return {two_bit(16, e), {}};
    case TensorType::Q3_K: return {two_bit(32, e), {e % 32, e / 32, 1}};
    case TensorType::Q4_K: return {k_nibble(16, e), {}};
    case TensorType::Q5_K: return {k_nibble(48, e), {16 + e % 32, 2 * (e / 64) + (e % 64) / 32, 1}};
    case TensorType::IQ4_NL: return {nibble(2, e), {}};
    case TensorType::IQ4_XS: return {{8 + 16 * (e / 32) + e % 16, e % 32 < 16 ? 0 : 4, 4}, {}};
    case TensorType::Q6_K: {
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      return {{64 * h + (k % 2) * 32 + l, k < 2 ? 0 : 4, 4}, {128 + 32 * h + l, 2 * k, 2}};
    }
    default: throw Error(std::string("no code layout for ggml type ") + ggml_encoding(type).name);
  }
}

int read_field(const uint8_t* block, const BitField& f) { return (block[f.byte] >> f.shift) & ((1 << f.width) - 1); }

void write_field(uint8_t* block, const BitField& f, int value) {
  const int mask = ((1 << f.width) - 1) << f.shift;
  block[f.byte] = uint8_t((block[f.byte] & ~mask) | ((value << f.shift) & mask));
}

}  // namespace

bool has_block_codes(TensorType type) {
  switch (type) {
    case TensorType::Q4_0: case TensorType::Q4_1: case TensorType::Q5_0: case TensorType::Q5_1:
    case TensorType::Q8_0: case TensorType::Q2_K: case TensorType::Q3_K: case TensorType::Q4_K:
    case TensorType::Q5_K: case TensorType::Q6_K: case TensorType::IQ4_NL: case TensorType::IQ4_XS:
      return true;
    default: return false;
  }
}

BlockCodeRange block_code_range(TensorType type) {
  const CodeFields f = code_fields(type, 0);
  // ggml's own Q8_0 never stores -128 (some SIMD dot products negate codes).
  if (type == TensorType::Q8_0) return {-127, 127};
  return {0, (1 << (f.low.width + f.high.width)) - 1};
}

int read_block_code(TensorType type, const uint8_t* block, int element) {
  const CodeFields f = code_fields(type, element);
  const int low = read_field(block, f.low);
  if (type == TensorType::Q8_0) return int8_t(uint8_t(low));
  return f.high.width ? low | (read_field(block, f.high) << f.low.width) : low;
}

void write_block_code(TensorType type, uint8_t* block, int element, int code) {
  const CodeFields f = code_fields(type, element);
  write_field(block, f.low, code & ((1 << f.low.width) - 1));
  if (f.high.width) write_field(block, f.high, code >> f.low.width);
}

bool block_levels_uniform(TensorType type) { return type != TensorType::IQ4_NL && type != TensorType::IQ4_XS; }

std::vector<float> block_code_levels(TensorType type) {
  const BlockCodeRange range = block_code_range(type);
  std::vector<float> levels;
  for (int code = range.min_code; code <= range.max_code; ++code)
    levels.push_back(block_levels_uniform(type) ? float(code) : float(ggml_tables::kIq4nlValues[code]));
  return levels;
}

void block_affine_grid(TensorType type, const uint8_t* block, float* scale, float* offset) {
  const GgmlEncoding& e = ggml_encoding(type);
  const int n = int(e.block_elements);
  std::vector<uint8_t> probe(block, block + e.block_bytes);
  if (!block_levels_uniform(type)) {
    constexpr int kLevelOne = 8;  // kIq4nlValues[8] == 1: the decoder's d * 1 is the scale itself
    for (int i = 0; i < n; ++i) write_block_code(type, probe.data(), i, kLevelOne);
    decode_to_f32(type, probe.data(), n, scale);
    for (int i = 0; i < n; ++i) offset[i] = 0.0f;
    return;
  }
  std::vector<float> at_one(size_t(n), 0.0f);
  for (int i = 0; i < n; ++i) write_block_code(type, probe.data(), i, 0);
  decode_to_f32(type, probe.data(), n, offset);
  for (int i = 0; i < n; ++i) write_block_code(type, probe.data(), i, 1);
  decode_to_f32(type, probe.data(), n, at_one.data());
  for (int i = 0; i < n; ++i) scale[i] = at_one[size_t(i)] - offset[i];
}

}  // namespace llmpress

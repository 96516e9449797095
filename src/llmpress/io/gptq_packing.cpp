#include "llmpress/io/gptq_packing.h"

#include "llmpress/core/error.h"

namespace llmpress {

namespace {

void check_bits(int bits) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    throw Error("GPTQ packing: " + std::to_string(bits) + " bits (the format has 2, 3, 4 and 8)");
}

constexpr int64_t kWordRange = int64_t(1) << 32;

// Nibble i of an AWQ word holds column kAwqOrder[i] of its 8.
constexpr int64_t kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

}  // namespace

at::Tensor pack_gptq_rows(const at::Tensor& codes, int bits) {
  check_bits(bits);
  if (codes.dim() != 2 || codes.size(0) % 32 != 0)
    throw Error("GPTQ packing: " + std::to_string(codes.size(0)) + " rows are not a multiple of 32");
  const int64_t runs = codes.size(0) / 32, cols = codes.size(1);
  const at::Tensor c = codes.to(at::kCPU, at::kLong).reshape({runs, 32, cols});
  at::Tensor words = at::zeros({runs, bits, cols}, at::kLong);  // uint32 bit patterns
  for (int k = 0; k < 32; ++k) {
    const int start = k * bits, word = start / 32, shift = start % 32;
    const at::Tensor code = c.select(1, k);
    words.select(1, word).bitwise_or_(at::remainder(code * (int64_t(1) << shift), kWordRange));
    if (shift + bits > 32) words.select(1, word + 1).bitwise_or_(at::floor_divide(code, int64_t(1) << (32 - shift)));
  }
  // Stored as the signed int32 with the same bits.
  words = at::where(words >= (kWordRange >> 1), words - kWordRange, words);
  return words.reshape({runs * bits, cols}).to(at::kInt);
}

at::Tensor unpack_gptq_rows(const at::Tensor& packed, int bits) {
  check_bits(bits);
  if (packed.dim() != 2 || packed.size(0) % bits != 0)
    throw Error("GPTQ packing: " + std::to_string(packed.size(0)) + " packed rows are not a multiple of " +
                std::to_string(bits));
  const int64_t runs = packed.size(0) / bits, cols = packed.size(1);
  at::Tensor words = packed.to(at::kCPU, at::kLong).reshape({runs, bits, cols});
  words = at::where(words < 0, words + kWordRange, words);
  const int64_t mask = (int64_t(1) << bits) - 1;
  at::Tensor codes = at::empty({runs, 32, cols}, at::kLong);
  for (int k = 0; k < 32; ++k) {
    const int start = k * bits, word = start / 32, shift = start % 32;
    at::Tensor code = at::floor_divide(words.select(1, word), int64_t(1) << shift);
    if (shift + bits > 32) code = code + words.select(1, word + 1) * (int64_t(1) << (32 - shift));
    codes.select(1, k).copy_(at::bitwise_and(code, mask));
  }
  return codes.reshape({runs * 32, cols});
}

at::Tensor pack_awq_columns(const at::Tensor& codes) {
  if (codes.dim() != 2 || codes.size(1) % 8 != 0)
    throw Error("AWQ packing: " + std::to_string(codes.size(-1)) + " columns are not a multiple of 8");
  const int64_t rows = codes.size(0), words = codes.size(1) / 8;
  const at::Tensor c = codes.to(at::kCPU, at::kLong).reshape({rows, words, 8});
  at::Tensor packed = at::zeros({rows, words}, at::kLong);  // uint32 bit patterns
  for (int i = 0; i < 8; ++i) packed.add_(c.select(2, kAwqOrder[i]) * (int64_t(1) << (4 * i)));
  packed = at::where(packed >= (kWordRange >> 1), packed - kWordRange, packed);  // as signed int32
  return packed.to(at::kInt);
}

at::Tensor unpack_awq_columns(const at::Tensor& packed) {
  if (packed.dim() != 2) throw Error("AWQ packing: packed codes must be 2-D");
  at::Tensor words = packed.to(at::kCPU, at::kLong);
  words = at::where(words < 0, words + kWordRange, words);
  at::Tensor codes = at::empty({packed.size(0), packed.size(1), 8}, at::kLong);
  for (int i = 0; i < 8; ++i)
    codes.select(2, kAwqOrder[i]).copy_(at::bitwise_and(at::floor_divide(words, int64_t(1) << (4 * i)), 15));
  return codes.reshape({packed.size(0), packed.size(1) * 8});
}

}  // namespace llmpress

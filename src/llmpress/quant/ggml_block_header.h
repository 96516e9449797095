#pragma once
// The header of one ggml block (its f16 scale and min, and the integer sub-block scales and mins)
// and the grid it defines, for every type llmpress encodes:
//   value = (d * scale_j) * (code - code_offset) + offset_j
// with offset_j = -(dmin * min_j) for Q2_K / Q4_K / Q5_K, the block's f16 min for Q4_1 / Q5_1, and
// none for the others; the legacy types have one sub-block whose scale is 1. This is the arithmetic
// of ggml's dequantize_row_* (formats.md 2.2 / 2.3), so a header plus codes is an exact decoded value.
// Plain C++, no torch.
#include <array>
#include <cstdint>

#include "llmpress/io/tensor_data.h"

namespace llmpress {

struct BlockGrid {
  enum class Offset { None, BlockMin, SubBlockMin };
  int sub_blocks = 1, sub_elements = 32;
  int code_min = 0, code_max = 15, code_offset = 0;  // stored codes, and what the decoder subtracts
  bool sub_scales = false;                           // integer scale per sub-block (k-quants)
  int scale_min = 0, scale_max = 0;
  Offset offset = Offset::None;
  int min_max = 0;                                   // SubBlockMin: sub-block mins in [0, min_max]
};

// Throws Error for types without a block grid (plain floats, i-quants).
const BlockGrid& block_grid(TensorType type);
bool has_block_grid(TensorType type);

struct BlockHeader {
  float d = 0;    // the f16 scale (stored as f16: a value f16 cannot hold is rounded)
  float min = 0;  // Q4_1 / Q5_1: the f16 min; Q2_K / Q4_K / Q5_K: dmin; otherwise unused
  std::array<int, 16> scales{}, mins{};  // per sub-block (k-quants), within block_grid's ranges
};

BlockHeader read_block_header(TensorType type, const uint8_t* block);
// Writes the header fields of `block`, leaving its codes as they are. Throws Error for an integer
// scale or min outside the grid's range.
void write_block_header(TensorType type, uint8_t* block, const BlockHeader& header);

}  // namespace llmpress

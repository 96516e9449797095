#include "llmpress/quant/ggml_block_header.h"

#include <cstring>
#include <string>

#include "llmpress/core/error.h"
#include "llmpress/quant/ggml_block_bytes.h"

namespace llmpress {

using ggml_blocks::load_f16;
using ggml_blocks::store_f16;

namespace {

using Offset = BlockGrid::Offset;

// Byte offsets of the f16 fields (formats.md 2.2 / 2.3).
struct HeaderLayout {
  int d, min;  // min: -1 when absent
};

HeaderLayout header_layout(TensorType type) {
  switch (type) {
    case TensorType::Q4_1:
    case TensorType::Q5_1: return {0, 2};
    case TensorType::Q2_K: return {80, 82};
    case TensorType::Q3_K: return {108, -1};
    case TensorType::Q4_K:
    case TensorType::Q5_K: return {0, 2};
    case TensorType::Q6_K: return {208, -1};
    default: return {0, -1};  // Q4_0, Q5_0, Q8_0
  }
}

void check_range(TensorType type, const char* what, int value, int lo, int hi) {
  if (value < lo || value > hi)
    throw Error(std::string("ggml ") + tensor_type_name(type) + " block: " + what + " " + std::to_string(value) +
                " is outside " + std::to_string(lo) + ".." + std::to_string(hi));
}

}  // namespace

bool has_block_grid(TensorType type) {
  switch (type) {
    case TensorType::Q4_0: case TensorType::Q4_1: case TensorType::Q5_0: case TensorType::Q5_1:
    case TensorType::Q8_0: case TensorType::Q2_K: case TensorType::Q3_K: case TensorType::Q4_K:
    case TensorType::Q5_K: case TensorType::Q6_K: return true;
    default: return false;
  }
}

const BlockGrid& block_grid(TensorType type) {
  static const BlockGrid q4_0{1, 32, 0, 15, 8};
  static const BlockGrid q4_1{1, 32, 0, 15, 0, false, 0, 0, Offset::BlockMin};
  static const BlockGrid q5_0{1, 32, 0, 31, 16};
  static const BlockGrid q5_1{1, 32, 0, 31, 0, false, 0, 0, Offset::BlockMin};
  static const BlockGrid q8_0{1, 32, -127, 127, 0};  // ggml never stores -128 (formats.md 2.2)
  static const BlockGrid q2_k{16, 16, 0, 3, 0, true, 0, 15, Offset::SubBlockMin, 15};
  static const BlockGrid q3_k{16, 16, 0, 7, 4, true, -32, 31};
  static const BlockGrid q4_k{8, 32, 0, 15, 0, true, 0, 63, Offset::SubBlockMin, 63};
  static const BlockGrid q5_k{8, 32, 0, 31, 0, true, 0, 63, Offset::SubBlockMin, 63};
  static const BlockGrid q6_k{16, 16, 0, 63, 32, true, -128, 127};
  switch (type) {
    case TensorType::Q4_0: return q4_0;
    case TensorType::Q4_1: return q4_1;
    case TensorType::Q5_0: return q5_0;
    case TensorType::Q5_1: return q5_1;
    case TensorType::Q8_0: return q8_0;
    case TensorType::Q2_K: return q2_k;
    case TensorType::Q3_K: return q3_k;
    case TensorType::Q4_K: return q4_k;
    case TensorType::Q5_K: return q5_k;
    case TensorType::Q6_K: return q6_k;
    default: throw Error(std::string("ggml type ") + tensor_type_name(type) + " has no trainable block grid");
  }
}

BlockHeader read_block_header(TensorType type, const uint8_t* block) {
  const HeaderLayout layout = header_layout(type);
  BlockHeader h;
  h.d = load_f16(block + layout.d);
  if (layout.min >= 0) h.min = load_f16(block + layout.min);
  switch (type) {
    case TensorType::Q2_K:
      for (int j = 0; j < 16; ++j) h.scales[size_t(j)] = block[j] & 0x0f, h.mins[size_t(j)] = block[j] >> 4;
      break;
    case TensorType::Q3_K:
      for (int j = 0; j < 16; ++j) h.scales[size_t(j)] = ggml_blocks::unpack_q3_scale(block + 96, j);
      break;
    case TensorType::Q4_K:
    case TensorType::Q5_K:
      for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        ggml_blocks::unpack_scale_min_k4(j, block + 4, sc, m);
        h.scales[size_t(j)] = sc, h.mins[size_t(j)] = m;
      }
      break;
    case TensorType::Q6_K:
      for (int j = 0; j < 16; ++j) h.scales[size_t(j)] = int8_t(block[192 + j]);
      break;
    default: break;
  }
  return h;
}

void write_block_header(TensorType type, uint8_t* block, const BlockHeader& h) {
  const BlockGrid& grid = block_grid(type);
  for (int j = 0; grid.sub_scales && j < grid.sub_blocks; ++j) {
    check_range(type, "sub-block scale", h.scales[size_t(j)], grid.scale_min, grid.scale_max);
    if (grid.offset == Offset::SubBlockMin) check_range(type, "sub-block min", h.mins[size_t(j)], 0, grid.min_max);
  }
  const HeaderLayout layout = header_layout(type);
  store_f16(block + layout.d, h.d);
  if (layout.min >= 0) store_f16(block + layout.min, h.min);
  switch (type) {
    case TensorType::Q2_K:
      for (int j = 0; j < 16; ++j) block[j] = uint8_t(h.scales[size_t(j)] | (h.mins[size_t(j)] << 4));
      break;
    case TensorType::Q3_K: {
      int stored[16];
      for (int j = 0; j < 16; ++j) stored[j] = h.scales[size_t(j)] + 32;
      ggml_blocks::pack_q3_scales(stored, block + 96);
      break;
    }
    case TensorType::Q4_K:
    case TensorType::Q5_K:
      std::memset(block + 4, 0, 12);
      for (int j = 0; j < 8; ++j)
        ggml_blocks::pack_scale_min_k4(j, uint8_t(h.scales[size_t(j)]), uint8_t(h.mins[size_t(j)]), block + 4);
      break;
    case TensorType::Q6_K:
      for (int j = 0; j < 16; ++j) block[192 + j] = uint8_t(int8_t(h.scales[size_t(j)]));
      break;
    default: break;
  }
}

}  // namespace llmpress

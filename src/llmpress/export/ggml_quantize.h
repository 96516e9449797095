#pragma once
// ggml element encodings (plain floats and block quantization), bit-exact with ggml's reference
// `quantize_row_*_ref` (formats.md 2.1, 2.2). Plain C++, no torch.
//
// One table row per type: adding a type (the k-quants) means writing its encode function and
// adding a row to the table in ggml_quantize.cpp; callers go through ggml_encoding()/encode_rows().
#include <cstdint>
#include <vector>

#include "llmpress/io/tensor_data.h"

namespace llmpress {

struct GgmlEncoding {
  TensorType type;
  const char* name;
  int64_t block_elements;  // 1 for plain floats, 32 for legacy blocks
  int64_t block_bytes;
  uint32_t llama_file_type;  // general.file_type when most tensors use this type (llama_ftype numbering)
  bool quantized;            // needs general.quantization_version
  // Encodes `count` floats (a multiple of block_elements) into block_bytes * count / block_elements bytes.
  void (*encode)(const float* src, int64_t count, uint8_t* dst);
};

// Throws Error for a type without an encoder.
const GgmlEncoding& ggml_encoding(TensorType type);
// Throws Error for an unknown name; names as llama.cpp spells them (case-insensitive): F32, F16, BF16, Q8_0, Q4_0.
TensorType ggml_type_from_name(const std::string& name);

// Bytes of `rows` rows of `row_elements` each; throws Error if row_elements is not a whole number of blocks.
uint64_t ggml_encoded_bytes(TensorType type, int64_t row_elements, int64_t rows);
// Encodes a row-major float matrix row by row (blocks never straddle rows).
std::vector<uint8_t> encode_rows(TensorType type, const float* src, int64_t row_elements, int64_t rows);

// The individual reference quantizers (count must be a multiple of 32).
void quantize_q8_0(const float* src, int64_t count, uint8_t* dst);
void quantize_q4_0(const float* src, int64_t count, uint8_t* dst);

}  // namespace llmpress

#pragma once
// ggml element encodings (plain floats and block quantization), bit-exact with ggml's reference
// `quantize_row_*_ref` and, with an importance vector, ggml's `quantize_*` with quant_weights
// (formats.md 2.1-2.4, 2.7). Plain C++, no torch.
//
// One table row per type pointing at the quantizers in src/llmpress/quant/ggml_blocks.h;
// callers go through ggml_encoding()/encode_rows().
#include <cstdint>
#include <string>
#include <vector>

#include "llmpress/io/tensor_data.h"
#include "llmpress/quant/ggml_blocks.h"

namespace llmpress {

struct GgmlEncoding {
  TensorType type;
  const char* name;
  int64_t block_elements;  // 1 for plain floats, 32 for legacy blocks, 256 for k-quants
  int64_t block_bytes;
  uint32_t llama_file_type;  // general.file_type when most tensors use this type (llama_ftype numbering)
  bool quantized;            // needs general.quantization_version
  // Encodes `count` floats (a multiple of block_elements) into block_bytes * count / block_elements bytes.
  // Null for types ggml quantizes only with importance (IQ2_XXS, IQ2_XS, IQ1_S).
  void (*encode)(const float* src, int64_t count, uint8_t* dst);
  // Encodes one row of `count` floats weighted by `importance` (count values, may be null).
  // Null for types that ignore importance (floats, Q8_0): encode is used instead.
  void (*encode_weighted)(const float* row, int64_t count, const float* importance, uint8_t* dst);
};

// Throws Error for a type without an encoder.
const GgmlEncoding& ggml_encoding(TensorType type);
bool ggml_can_encode(TensorType type);
// Types that cannot be encoded without an importance vector (encode_rows throws for them).
bool ggml_needs_importance(TensorType type);
// Throws Error for an unknown name; names as llama.cpp spells them (case-insensitive): F32, F16, BF16,
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and the i-quant and ternary types.
TensorType ggml_type_from_name(const std::string& name);

// Bytes of `rows` rows of `row_elements` each; throws Error if row_elements is not a whole number of blocks.
uint64_t ggml_encoded_bytes(TensorType type, int64_t row_elements, int64_t rows);
// Encodes a row-major float matrix row by row (blocks never straddle rows).
std::vector<uint8_t> encode_rows(TensorType type, const float* src, int64_t row_elements, int64_t rows);
// As encode_rows, every row weighted by the same per-column importance (row_elements values,
// an imatrix entry); null importance gives encode_rows' bytes (or throws, ggml_needs_importance).
// llama-quantize's --imatrix path.
std::vector<uint8_t> encode_rows_weighted(TensorType type, const float* src, int64_t row_elements, int64_t rows,
                                          const float* importance);

}  // namespace llmpress

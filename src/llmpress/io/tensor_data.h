#pragma once
// Raw tensor bytes as stored in a file, and their conversion to float32.
// No torch here: readers stay plain C++ and torch only sees finished float buffers.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace llmpress {

class MappedFile;

// Element / block types we can read. Values are ggml's type ids so GGUF needs no translation table.
// The i-quant and ternary types are read only (the writers encode F32/F16/BF16, Q4_0..Q8_0, Q2_K..Q6_K).
enum class TensorType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I32 = 26,  // integer tensors (GPTQ's packed codes); decoded to float by value
  I64 = 27,  // compressed-tensors' shapes and row offsets; decoded to float by value
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  U8 = 256,  // not a ggml type (safetensors only: compressed-tensors' bitmasks); never accepted from GGUF
};

struct TensorTypeInfo {
  const char* name;
  int64_t block_elements;  // elements per block (1 for plain floats)
  int64_t block_bytes;     // bytes per block
};

// Name and block geometry of every type id ggml currently defines (formats.md 1.6), decodable by
// llmpress or not (Q8_1, Q8_K, I8, MXFP4, ...); nullptr for unknown and removed ids.
const TensorTypeInfo* ggml_type_info(uint32_t ggml_type_id);
// The type as users know it ("IQ4_XS"), for any id: removed ids say so ("Q4_2 (removed from ggml)"),
// ids ggml never defined read "unknown ggml type id 99". For error messages.
std::string ggml_type_name(uint32_t ggml_type_id);

// As ggml_type_info, but nullptr for a type id llmpress cannot decode (decode_to_f32 handles the rest).
const TensorTypeInfo* tensor_type_info(uint32_t ggml_type_id);
const TensorTypeInfo& tensor_type_info(TensorType type);
std::string tensor_type_name(TensorType type);
// Comma-separated names of the types tensor_type_info accepts, for error messages.
std::string decodable_type_names();

// Bytes needed for `elements` values of `type`; throws Error when elements is not a whole number of blocks.
uint64_t tensor_bytes(TensorType type, uint64_t elements);

// A tensor inside a memory-mapped file: nothing is copied until it is materialized.
struct RawTensor {
  std::string name;               // Hugging Face name inside the program
  std::string file;               // path, for error messages
  TensorType type = TensorType::F32;
  std::vector<int64_t> shape;     // row-major (PyTorch order)
  const uint8_t* data = nullptr;  // points into `mapping`
  uint64_t nbytes = 0;
  std::shared_ptr<MappedFile> mapping;  // keeps the bytes alive
  // Meta/llama2.c interleaved RoPE rows to convert to the Hugging Face half-split layout at load
  // (0 = no conversion, otherwise the number of heads of this q/k projection).
  int64_t unpermute_rope_heads = 0;

  int64_t numel() const;
};

// Decodes `count` elements of `type` from `src` into `dst` (dequantizing block types).
void decode_to_f32(TensorType type, const uint8_t* src, int64_t count, float* dst);

}  // namespace llmpress

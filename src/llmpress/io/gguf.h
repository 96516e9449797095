#pragma once
// GGUF (v2/v3) reader: a generic parse of metadata and tensor infos, and the conversion of a
// `llama` or `qwen2` GGUF into a Checkpoint with Hugging Face tensor names.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace llmpress {

class Checkpoint;
class MappedFile;

enum class GgufType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* gguf_type_name(GgufType type);

// One metadata value. Scalars use the member of their kind; arrays fill the vector of their kind.
struct GgufValue {
  GgufType type = GgufType::UINT32;
  GgufType array_type = GgufType::UINT32;  // element type when type == ARRAY
  int64_t int_value = 0;    // all integer types and BOOL (UINT64 above 2^63 wraps)
  double float_value = 0;   // FLOAT32 / FLOAT64
  std::string string_value;
  std::vector<int64_t> ints;  // integer / BOOL arrays
  std::vector<double> floats;  // float arrays
  std::vector<std::string> strings;  // string arrays

  bool is_integer() const;  // integer scalar (not BOOL)
  bool is_float() const;
  uint64_t array_size() const;
  std::string to_display_string() const;  // short form for `info`
};

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> ne;  // ggml order: ne[0] is the innermost dimension
  uint32_t ggml_type = 0;
  uint64_t offset = 0;       // relative to data_start
  uint64_t nbytes = 0;
};

struct GgufFile {
  std::shared_ptr<MappedFile> file;
  uint32_t version = 3;
  std::vector<std::pair<std::string, GgufValue>> metadata;  // in file order
  std::vector<GgufTensorInfo> tensors;                       // in file order
  uint64_t alignment = 32;
  uint64_t data_start = 0;

  const GgufValue* find(const std::string& key) const;
};

// Parses and validates the whole structure (every length and count is checked against the
// remaining bytes before anything is allocated; tensor bytes are checked to lie in the file).
GgufFile read_gguf(const std::string& path);

// Converts a parsed GGUF of architecture `llama` or `qwen2` into a Checkpoint (config, HF-named
// tensors, vocabulary). Tensors of types llmpress cannot decode are rejected here.
Checkpoint gguf_to_checkpoint(const GgufFile& gguf);

}  // namespace llmpress

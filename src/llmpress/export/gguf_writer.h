#pragma once
// GGUF v3 output (formats.md 1): a generic writer for typed metadata and tensors, and
// write_gguf_model(), which lays out a Llama-family model the way llama.cpp loads it.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "llmpress/export/named_tensor.h"
#include "llmpress/io/gguf.h"  // GgufType, shared with the reader
#include "llmpress/io/model_config.h"
#include "llmpress/io/tensor_data.h"
#include "llmpress/io/vocab.h"

namespace llmpress {

// Collects key/values and tensors, then writes everything in one pass (atomically).
// Keys must be unique and non-empty; tensor names unique and at most 63 bytes (ggml's limit).
// Tensor data is produced lazily at write time, in the order tensors were added, so a large
// model need not be held twice in memory.
class GgufWriter {
 public:
  static constexpr uint32_t kAlignment = 32;  // ggml's default; we never write general.alignment
  static constexpr size_t kMaxTensorName = 63;

  void set_u8(const std::string& key, uint8_t v);
  void set_i8(const std::string& key, int8_t v);
  void set_u16(const std::string& key, uint16_t v);
  void set_i16(const std::string& key, int16_t v);
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_u64(const std::string& key, uint64_t v);
  void set_i64(const std::string& key, int64_t v);
  void set_f32(const std::string& key, float v);
  void set_f64(const std::string& key, double v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_array_u8(const std::string& key, const std::vector<uint8_t>& v);
  void set_array_i8(const std::string& key, const std::vector<int8_t>& v);
  void set_array_u16(const std::string& key, const std::vector<uint16_t>& v);
  void set_array_i16(const std::string& key, const std::vector<int16_t>& v);
  void set_array_u32(const std::string& key, const std::vector<uint32_t>& v);
  void set_array_i32(const std::string& key, const std::vector<int32_t>& v);
  void set_array_u64(const std::string& key, const std::vector<uint64_t>& v);
  void set_array_i64(const std::string& key, const std::vector<int64_t>& v);
  void set_array_f32(const std::string& key, const std::vector<float>& v);
  void set_array_f64(const std::string& key, const std::vector<double>& v);
  void set_array_bool(const std::string& key, const std::vector<bool>& v);
  void set_array_string(const std::string& key, const std::vector<std::string>& v);

  // `shape` in PyTorch (row-major) order; it is written reversed as ggml's ne. `produce`
  // returns exactly the encoded bytes (checked against the type's size for that shape).
  void add_tensor(const std::string& name, TensorType type, const std::vector<int64_t>& shape,
                  std::function<std::vector<uint8_t>()> produce);
  // Convenience for bytes already in hand.
  void add_tensor_bytes(const std::string& name, TensorType type, const std::vector<int64_t>& shape,
                        std::vector<uint8_t> bytes);

  bool has_key(const std::string& key) const;
  size_t key_count() const { return kvs_.size(); }
  size_t tensor_count() const { return tensors_.size(); }

  void write(const std::string& path) const;

 private:
  struct KeyValue {
    std::string key;
    std::vector<uint8_t> encoded;  // u32 type followed by the value, ready to write
  };
  struct TensorEntry {
    std::string name;
    TensorType type;
    std::vector<int64_t> shape;
    uint64_t nbytes;
    std::function<std::vector<uint8_t>()> produce;
  };
  std::vector<uint8_t>& new_key(const std::string& key, GgufType type);

  std::vector<KeyValue> kvs_;
  std::vector<TensorEntry> tensors_;
};

// A tensor already encoded as ggml blocks: [rows, row_bytes] uint8 in the Hugging Face row order,
// or produced by `load` when the writer reaches it (then `bytes` may be left undefined).
struct EncodedTensor {
  TensorType type;
  at::Tensor bytes;
  std::function<at::Tensor()> load;
  at::Tensor data() const { return load ? load() : bytes; }
};

struct GgufModelOptions {
  std::string name;  // general.name; empty = not written
  // Weights whose rows are not a whole number of blocks of the requested type fall back to this
  // type (llama-quantize does the same), instead of failing.
  TensorType fallback_type = TensorType::F16;
  // Per-tensor types by GGUF name (e.g. from choose_tensor_types); they replace `type` for the
  // tensors they name. Rows must fit the given type's block.
  std::map<std::string, TensorType> tensor_types;
  // general.file_type (llama_ftype numbering); unset = the one of `type`.
  std::optional<uint32_t> file_type;
  // Per-column importance (imatrix entry, one value per row element) by GGUF name: those tensors
  // use the importance-weighted quantizers (llama-quantize --imatrix).
  std::map<std::string, std::vector<float>> importance;
  // Tensors quantized elsewhere (GPTQ onto ggml blocks, ...) by GGUF name: written as they are (q/k
  // rows permuted), their type overriding every other choice. The NamedTensor given for such a
  // tensor only supplies its shape (it may be a meta tensor).
  std::map<std::string, EncodedTensor> encoded;
  // Extra string key/values (provenance: llmpress.version, llmpress.recipe).
  std::map<std::string, std::string> metadata;
};

// What write_gguf_model decided for one tensor.
struct GgufTensorChoice {
  std::string gguf_name;
  TensorType type;
  std::string note;  // why it differs from the requested type, empty otherwise
};

// Writes a llama.cpp-loadable GGUF: config.architecture "llama" (NORM RoPE: q/k rows permuted to
// the interleaved layout) or "qwen2" (NEOX, no permutation). `tensors` are Hugging Face names and
// layouts (missing lm_head.weight = tied). 2-D weights get `type` (F32/F16/BF16/Q8_0/Q4_0); norms,
// biases and other 1-D tensors are F32. The vocabulary is padded with [PAD{i}] tokens up to
// vocab_size. Throws Error for missing/unexpected tensors, shape mismatches, unsupported rope scaling.
std::vector<GgufTensorChoice> write_gguf_model(const std::string& path, const ModelConfig& config,
                                               const std::vector<NamedTensor>& tensors, const Vocab& vocab,
                                               TensorType type, const GgufModelOptions& options = {});

// write_gguf_model with a llama-quantize mix (Q4_K_M, Q3_K_S, Q8_0, F16, ...; quant/type_mix.h):
// per-tensor types as llama-quantize chooses them, `overrides` "REGEX=TYPE" on GGUF names, and
// general.file_type of the mix. options.tensor_types/file_type are replaced.
std::vector<GgufTensorChoice> write_gguf_model_mix(const std::string& path, const ModelConfig& config,
                                                   const std::vector<NamedTensor>& tensors, const Vocab& vocab,
                                                   const std::string& mix, const std::vector<std::string>& overrides = {},
                                                   GgufModelOptions options = {});

// GGUF tensor name for a Hugging Face name ("" when it has no GGUF counterpart).
std::string gguf_tensor_name(const std::string& hf_name);

}  // namespace llmpress

#pragma once
// A model on disk: config, tokenizer location and lazily materialized tensors under Hugging Face names.
#include <map>
#include <optional>
#include <string>

#include <ATen/ATen.h>

#include "llmpress/io/gptq_checkpoint.h"
#include "llmpress/io/model_config.h"
#include "llmpress/io/sparse_checkpoint.h"
#include "llmpress/io/tensor_data.h"
#include "llmpress/io/vocab.h"

namespace llmpress {

enum class CheckpointFormat { HuggingFace, Gguf, Llama2c };
const char* checkpoint_format_name(CheckpointFormat format);

struct OpenOptions {
  std::string tokenizer;  // explicit tokenizer file (llama2.c tokenizer.bin, tokenizer.model, tokenizer.json)
};

class Checkpoint {
 public:
  std::string path;
  CheckpointFormat format = CheckpointFormat::HuggingFace;
  ModelConfig config;
  std::map<std::string, RawTensor> tensors;  // Hugging Face names: model.layers.0.self_attn.q_proj.weight ...
  std::string tokenizer_file;  // .model, tokenizer.json or llama2.c tokenizer.bin; empty if none found
  std::optional<Vocab> vocab;  // GGUF's embedded vocabulary
  std::map<std::string, std::string> metadata;  // informational key/values for `info`
  // GPTQ-packed linear layers by weight name; their `tensors` entries have no data of their own.
  std::map<std::string, GptqPackedLinear> gptq_linears;
  // compressed-tensors sparse layers by weight name; their `tensors` entries have no data of their
  // own (type: the stored values' dtype, nbytes: all their compressed tensors' bytes).
  std::map<std::string, SparseCompressedLinear> sparse_linears;

  bool has(const std::string& name) const { return tensors.count(name) != 0; }
  // Throws "PATH: missing tensor NAME" when absent.
  const RawTensor& tensor(const std::string& name) const;
  // Decodes one tensor to a float32 torch tensor on `device` (RoPE layout converted when needed).
  at::Tensor load(const std::string& name, const at::Device& device = at::kCPU) const;
  // A 2-D tensor's stored bytes as [rows, row_bytes] uint8 on the CPU, rows in the Hugging Face
  // order (RoPE rows unpermuted as load() does): ggml blocks are kept as they are, undecoded.
  at::Tensor load_bytes(const std::string& name) const;
};

// Detects the format (a directory with config.json, a .gguf file, a llama2.c .bin) and opens it.
// Checks every size and offset; the tensors' bytes are not read until load().
Checkpoint open_checkpoint(const std::string& path, const OpenOptions& options = {});

// Hugging Face names of the tensors a model with this config needs, with their shapes.
std::map<std::string, std::vector<int64_t>> expected_tensor_shapes(const ModelConfig& config);
// Throws one Error naming the file and every missing tensor / first wrong shape.
void check_tensors_against_config(const Checkpoint& checkpoint);

}  // namespace llmpress

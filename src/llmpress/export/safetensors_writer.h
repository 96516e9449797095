#pragma once
// safetensors output as Hugging Face's serializer lays it out (formats.md 3), and whole
// Hugging Face checkpoint folders (config.json + weights + tokenizer files).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <map>

#include "llmpress/export/named_tensor.h"
#include "llmpress/io/model_config.h"

namespace llmpress {

// One .safetensors file (atomic). F32/F16/BF16/I32/I64/U8 tensors, stored in their own dtype; other dtypes
// are refused. Data sorted by dtype (wider first) then name; header padded with spaces to a
// multiple of 8; __metadata__ = {"format": "pt"}.
void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors);

// model.safetensors into `dir`, or, when the data exceeds max_shard_bytes (> 0), shards
// model-0000i-of-0000n.safetensors filled in the given order plus model.safetensors.index.json.
// Returns the names of the files written.
std::vector<std::string> write_safetensors_files(const std::string& dir, const std::vector<NamedTensor>& tensors,
                                                 uint64_t max_shard_bytes = 0);

struct HfCheckpointOptions {
  uint64_t max_shard_bytes = 0;            // 0: one model.safetensors
  std::optional<at::ScalarType> dtype;     // cast every tensor (kFloat, kHalf, kBFloat16); default: keep
  // Tensors stored in place of the named one, as they are (no dtype cast): e.g. GPTQ's qweight,
  // qzeros, scales and g_idx for "...q_proj.weight", whose NamedTensor then only supplies the shape.
  std::map<std::string, std::vector<NamedTensor>> replacements;
  nlohmann::json extra_config = nlohmann::json::object();  // merged into config.json (quantization_config)
};

// Writes a Hugging Face model folder atomically (built next to `dir`, renamed into place; an
// existing folder is replaced only when the new one is complete): config.json, the weights
// (lm_head.weight dropped when tied) and copies of `tokenizer_files` (tokenizer.model,
// tokenizer.json, tokenizer_config.json, ...). Tensors are checked against the config first.
void write_hf_checkpoint(const std::string& dir, const ModelConfig& config, const std::vector<NamedTensor>& tensors,
                         const std::vector<std::string>& tokenizer_files, const HfCheckpointOptions& options = {});

}  // namespace llmpress

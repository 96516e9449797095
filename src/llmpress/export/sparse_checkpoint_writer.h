#pragma once
// Pruned models as compressed-tensors sparse checkpoints (the layout llm-compressor saves and
// vLLM / transformers load): each compressed linear layer stores only its nonzero weights plus a
// bitmask of where they go, and config.json carries quantization_config.sparsity_config.
//
// Per layer, under the module name M ("model.layers.0.self_attn.q_proj"; no M.weight is stored):
//   sparse-bitmask (any sparsity)
//     M.shape        int64 [2]                 dense [out, in]
//     M.compressed   weight dtype [nnz]        nonzeros, row-major order
//     M.bitmask      uint8 [out, ceil(in/8)]   bit (j % 8) of byte j / 8 of row r: w[r, j] != 0
//     M.row_offsets  int64 [out]               index in `compressed` of row r's first nonzero
//   sparse-24-bitmask (2:4: at most 2 nonzeros in every 4 consecutive weights of a row)
//     M.shape        int64 [2, 1]
//     M.compressed   weight dtype [out, in/2]  exactly 2 kept weights per group of 4, in order
//     M.bitmask      uint8 [out, ceil(in/8)]   the kept positions (exactly 2 bits per group of 4)
// Bits are little-endian within each byte (numpy.packbits(..., bitorder="little")), rows padded
// to whole bytes with zero bits.
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmpress/export/named_tensor.h"
#include "llmpress/io/model_config.h"

namespace llmpress {

enum class SparseFormat { Bitmask, Bitmask24 };

// "sparse-bitmask" / "sparse-24-bitmask", compressed-tensors' names.
const char* sparse_format_name(SparseFormat format);
// Throws Error listing the supported names for anything else.
SparseFormat parse_sparse_format(const std::string& name);

// The named tensors that replace `module`.weight (a dense [out, in] float tensor whose zeros are
// the pruned weights); `compressed` keeps the weight's dtype. Exact zeros (and -0.0) are the
// pruned positions. For 2:4, groups with fewer than 2 nonzeros keep their first zero positions
// (the format stores exactly 2 values per group). Throws Error naming the module for a weight that
// is not 2-D, and for 2:4 when in % 4 != 0 or a group of 4 holds more than 2 nonzeros.
std::vector<NamedTensor> sparse_compressed_tensors(const std::string& module, const at::Tensor& weight,
                                                   SparseFormat format);

// config.json's "quantization_config" as compressed-tensors' ModelCompressor.update_config writes it
// for a sparsity-only model: {"quant_method": "compressed-tensors", "version", "sparsity_config":
// {"format", "global_sparsity", "sparsity_structure", "targets", "ignore",
// "registry_requires_subclass"}, "transform_config": {}}. `ignore`: module names of Linear layers
// left dense (lm_head always added, as llm-compressor does).
nlohmann::json sparse_quantization_config(SparseFormat format, double global_sparsity,
                                          const std::vector<std::string>& ignore);

struct SparseCheckpointOptions {
  SparseFormat format = SparseFormat::Bitmask;
  std::optional<at::ScalarType> dtype;  // cast every float tensor first (kFloat, kHalf, kBFloat16); default: keep
  uint64_t max_shard_bytes = 0;         // 0: one model.safetensors
  // Weight names to compress ("model.layers.0.mlp.up_proj.weight"). Empty: every decoder linear
  // weight (q/k/v/o/gate/up/down of every layer). Embeddings, norms and lm_head always stay dense.
  std::set<std::string> compress;
};

// Writes the Hugging Face folder atomically (write_hf_checkpoint with the compressed layers as
// replacements and quantization_config in config.json). global_sparsity is the fraction of zeros
// over all stored parameters, as llm-compressor reports it. Throws Error before writing anything
// when a named weight is missing, is not a decoder linear weight, or cannot be stored in the format.
void write_sparse_checkpoint(const std::string& dir, const ModelConfig& config, const std::vector<NamedTensor>& tensors,
                             const std::vector<std::string>& tokenizer_files, const SparseCheckpointOptions& options);

}  // namespace llmpress

#include "llmpress/export/sparse_checkpoint_writer.h"

#include <map>

#include "llmpress/core/error.h"
#include "llmpress/export/model_tensors.h"
#include "llmpress/export/safetensors_writer.h"

namespace llmpress {

namespace {

// The compressed-tensors release whose compressors and config this layout was checked against.
constexpr const char* kCompressedTensorsVersion = "0.12.2";

const char* const kLinearSuffixes[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                       "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

std::string strip_weight(const std::string& name) {
  return name.substr(0, name.size() - std::string(".weight").size());
}

// Row-wise little-endian bit packing of a bool [rows, cols] mask into uint8 [rows, ceil(cols / 8)].
at::Tensor pack_bits(const at::Tensor& mask) {
  const int64_t rows = mask.size(0), cols = mask.size(1), bytes = (cols + 7) / 8;
  at::Tensor padded = at::zeros({rows, bytes * 8}, at::kLong);
  padded.narrow(1, 0, cols).copy_(mask);
  const at::Tensor weights = at::pow(2, at::arange(8, at::kLong));  // bit k of a byte: column 8 * byte + k
  return (padded.view({rows, bytes, 8}) * weights).sum(-1).to(at::kByte);
}

}  // namespace

const char* sparse_format_name(SparseFormat format) {
  return format == SparseFormat::Bitmask24 ? "sparse-24-bitmask" : "sparse-bitmask";
}

SparseFormat parse_sparse_format(const std::string& name) {
  if (name == "sparse-bitmask") return SparseFormat::Bitmask;
  if (name == "sparse-24-bitmask") return SparseFormat::Bitmask24;
  throw Error("unknown sparse checkpoint format '" + name + "' (sparse-bitmask, sparse-24-bitmask)");
}

std::vector<NamedTensor> sparse_compressed_tensors(const std::string& module, const at::Tensor& weight,
                                                   SparseFormat format) {
  const std::string where = std::string(sparse_format_name(format)) + " export of " + module + ": ";
  if (weight.dim() != 2) throw Error(where + "the weight is not a matrix");
  if (!weight.is_floating_point()) throw Error(where + "the weight is not a float tensor");
  const at::Tensor w = weight.to(at::kCPU).contiguous();
  const int64_t rows = w.size(0), cols = w.size(1);
  const at::Tensor nonzero = w.ne(0);
  const at::Tensor shape = at::tensor(std::vector<int64_t>{rows, cols});

  if (format == SparseFormat::Bitmask) {
    const at::Tensor counts = nonzero.sum(1);  // int64
    return {{module + ".shape", shape},
            {module + ".compressed", w.masked_select(nonzero)},
            {module + ".bitmask", pack_bits(nonzero)},
            {module + ".row_offsets", (counts.cumsum(0) - counts).contiguous()}};
  }

  if (cols % 4 != 0)
    throw Error(where + "in_features " + std::to_string(cols) + " is not a multiple of 4, which 2:4 needs");
  const at::Tensor groups = nonzero.view({rows, cols / 4, 4});
  const at::Tensor counts = groups.sum(-1);  // [rows, cols / 4]
  const at::Tensor over = counts.gt(2).nonzero();
  if (over.size(0) > 0) {
    const int64_t r = over[0][0].item<int64_t>(), g = over[0][1].item<int64_t>();
    throw Error(where + "row " + std::to_string(r) + ", columns " + std::to_string(4 * g) + ".." +
                std::to_string(4 * g + 3) + " hold " + std::to_string(counts[r][g].item<int64_t>()) +
                " nonzeros (2:4 allows 2); " + std::to_string(over.size(0)) + " such groups");
  }
  // The format stores exactly two values per group: a group with fewer nonzeros also keeps its
  // first zero positions (as zeros).
  const at::Tensor zero = groups.logical_not();
  const at::Tensor zero_rank = zero.to(at::kLong).cumsum(-1);  // 1 for a group's first zero, 2 for its second...
  const at::Tensor fill = zero.logical_and(zero_rank.le((2 - counts).unsqueeze(-1)));
  const at::Tensor keep = groups.logical_or(fill).view({rows, cols});
  return {{module + ".shape", shape.view({2, 1})},
          {module + ".compressed", w.masked_select(keep).view({rows, cols / 2})},
          {module + ".bitmask", pack_bits(keep)}};
}

nlohmann::json sparse_quantization_config(SparseFormat format, double global_sparsity,
                                          const std::vector<std::string>& ignore) {
  std::vector<std::string> ignored = {"lm_head"};
  for (const std::string& name : ignore)
    if (name != "lm_head") ignored.push_back(name);
  const nlohmann::json sparsity = {
      {"format", sparse_format_name(format)},
      {"global_sparsity", global_sparsity},
      {"sparsity_structure", format == SparseFormat::Bitmask24 ? "2:4" : "unstructured"},
      {"targets", {"Linear"}},
      {"ignore", ignored},
      {"registry_requires_subclass", false},
  };
  return {{"quant_method", "compressed-tensors"},
          {"version", kCompressedTensorsVersion},
          {"sparsity_config", sparsity},
          {"transform_config", nlohmann::json::object()}};
}

void write_sparse_checkpoint(const std::string& dir, const ModelConfig& config, const std::vector<NamedTensor>& tensors,
                             const std::vector<std::string>& tokenizer_files, const SparseCheckpointOptions& options) {
  const std::string target = std::string(sparse_format_name(options.format)) + " export to " + dir;
  std::set<std::string> linears;  // every decoder linear weight of this config
  for (int64_t l = 0; l < config.num_layers; ++l)
    for (const char* suffix : kLinearSuffixes)
      linears.insert("model.layers." + std::to_string(l) + "." + suffix + ".weight");
  const std::set<std::string>& compress = options.compress.empty() ? linears : options.compress;
  for (const std::string& name : compress)
    if (!linears.count(name))
      throw Error(target + ": " + name + " is not a decoder linear weight (only those can be stored compressed)");

  const std::map<std::string, NamedTensor> stored = check_export_tensors(config, tensors, target);
  HfCheckpointOptions hf;
  hf.dtype = options.dtype;
  hf.max_shard_bytes = options.max_shard_bytes;
  double zeros = 0, total = 0;
  for (const auto& [name, named] : stored) {
    const at::Tensor tensor = named.data();
    const at::Tensor t = options.dtype && tensor.is_floating_point() ? tensor.to(*options.dtype) : tensor;
    zeros += double(t.eq(0).sum().item<int64_t>());
    total += double(t.numel());
    if (compress.count(name)) hf.replacements[name] = sparse_compressed_tensors(strip_weight(name), t, options.format);
  }
  for (const std::string& name : compress)
    if (!hf.replacements.count(name)) throw Error(target + ": no tensor " + name + " to compress");
  std::vector<std::string> dense;
  for (const std::string& name : linears)
    if (!compress.count(name)) dense.push_back(strip_weight(name));
  hf.extra_config["quantization_config"] =
      sparse_quantization_config(options.format, total > 0 ? zeros / total : 0.0, dense);
  write_hf_checkpoint(dir, config, tensors, tokenizer_files, hf);
}

}  // namespace llmpress

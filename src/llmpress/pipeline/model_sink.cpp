#include "llmpress/pipeline/model_sink.h"

#include <filesystem>
#include <map>
#include <memory>
#include <set>

#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/core/version.h"
#include "llmpress/export/ggml_quantize.h"
#include "llmpress/export/gguf_writer.h"
#include "llmpress/export/gptq_checkpoint_writer.h"
#include "llmpress/export/lora_adapter.h"
#include "llmpress/export/safetensors_writer.h"
#include "llmpress/export/sparse_checkpoint_writer.h"
#include "llmpress/export/tokenizer_files.h"
#include "llmpress/io/atomic_file.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/lowrank/low_rank_weight.h"
#include "llmpress/model/sparse_weight.h"
#include "llmpress/prune/sparsity_report.h"
#include "llmpress/quant/ggml_weight.h"
#include "llmpress/quant/int_grid.h"
#include "llmpress/quant/type_mix.h"
#include "llmpress/tokenizer/tokenizer.h"
#include "llmpress/train/lora.h"

namespace llmpress {

namespace fs = std::filesystem;

namespace {

std::string layer_prefix(int64_t i) { return "model.layers." + std::to_string(i) + "."; }

// The kind a pruned weight's values have (a SparseWeight's values), or the weight itself.
const LinearWeight& values_of(const LinearWeight& weight) {
  if (const auto* sparse = dynamic_cast<const SparseWeight*>(&weight)) return *sparse->values();
  return weight;
}

// Lazy tensors read their layer through this: consecutive tensors of one layer load it once.
class LayerCache {
 public:
  explicit LayerCache(const LayerSource& source) : source_(source) {}
  const DecoderLayer& get(int64_t index) {
    if (index != index_) {
      layer_ = source_.load_layer(index, at::kCPU);
      index_ = index;
    }
    return layer_;
  }
  const LinearWeight& weight(int64_t index, const std::string& name) { return *get(index).linear(name).weight; }

 private:
  const LayerSource& source_;
  int64_t index_ = -1;
  DecoderLayer layer_;
};

NamedTensor lazy_float(const std::string& name, const std::vector<int64_t>& shape, std::function<at::Tensor()> load) {
  return NamedTensor::lazy(name, shape, at::kFloat, [load, name] {
    at::Tensor t = load().to(at::kCPU, at::kFloat).contiguous();
    // No NaN or Inf reaches an output file (a diverged training or a broken stage must not ship).
    if (!at::isfinite(t).all().item<bool>())
      throw Error(name + " holds NaN or infinite values; nothing was written");
    return t;
  });
}

// Embeddings, final norm and head: of the pipeline's input, or the trained ones.
std::vector<NamedTensor> shell_tensors(const SinkInput& input, const ModelConfig& config) {
  std::vector<NamedTensor> tensors;
  std::vector<std::string> names = {"model.embed_tokens.weight", "model.norm.weight"};
  if (const Transformer* shell = input.shell) {
    std::vector<std::pair<std::string, at::Tensor>> own = {{names[0], shell->embed_tokens}, {names[1], shell->norm}};
    if (!config.tie_word_embeddings) own.push_back({"lm_head.weight", shell->lm_head.weight->dense()});
    for (const auto& [name, t] : own)
      tensors.push_back(lazy_float(name, t.sizes().vec(), [t = t] { return t.detach(); }));
    return tensors;
  }
  const Checkpoint& origin = input.origin;
  if (!config.tie_word_embeddings && origin.has("lm_head.weight")) names.push_back("lm_head.weight");
  for (const std::string& name : names)
    tensors.push_back(lazy_float(name, origin.tensor(name).shape, [&origin, name] { return origin.load(name); }));
  return tensors;
}

// The norms and biases of layer i, and for each linear what `linear_tensors` makes of it.
using LinearTensors = std::function<void(int64_t layer, const std::string& name, const LinearWeight& weight,
                                         std::vector<NamedTensor>& out)>;

std::vector<NamedTensor> model_tensors(const SinkInput& input, const std::shared_ptr<LayerCache>& cache,
                                       const LinearTensors& linear_tensors) {
  const ModelConfig& config = input.model.config();
  std::vector<NamedTensor> tensors = shell_tensors(input, config);
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const std::string prefix = layer_prefix(i);
    const DecoderLayer& layer = cache->get(i);  // for shapes and kinds (the cache keeps it for the first lazy reads)
    tensors.push_back(lazy_float(prefix + "input_layernorm.weight", {config.hidden_size},
                                 [cache, i] { return cache->get(i).input_norm; }));
    tensors.push_back(lazy_float(prefix + "post_attention_layernorm.weight", {config.hidden_size},
                                 [cache, i] { return cache->get(i).post_attention_norm; }));
    for (const std::string& name : DecoderLayer::linear_names()) {
      const Linear& linear = layer.linear(name);
      linear_tensors(i, name, *linear.weight, tensors);
      if (linear.bias.defined())
        tensors.push_back(lazy_float(prefix + name + ".bias", linear.bias.sizes().vec(),
                                     [cache, i, name] { return cache->get(i).linear(name).bias; }));
    }
  }
  return tensors;
}

NamedTensor lazy_dense(const std::shared_ptr<LayerCache>& cache, int64_t i, const std::string& name,
                       const LinearWeight& weight) {
  return lazy_float(layer_prefix(i) + name + ".weight", {weight.out_features(), weight.in_features()},
                    [cache, i, name] { return cache->weight(i, name).dense(); });
}

// ---- Summary of what was written ---------------------------------------------------------------

std::vector<LinearSummary> summarize_linears(const LayerSource& model) {
  std::vector<LinearSummary> out;
  for (int64_t i = 0; i < model.config().num_layers; ++i) {
    const DecoderLayer layer = model.load_layer(i, at::kCPU);
    for (const std::string& name : DecoderLayer::linear_names()) {
      const LinearWeight& w = *layer.linear(name).weight;
      LinearSummary s;
      s.name = layer_prefix(i) + name;
      s.kind = w.kind();
      s.out = w.out_features();
      s.in = w.in_features();
      s.parameters = w.parameter_count();
      s.storage_bits = w.storage_bits();
      const PruningMask mask = w.pruning_mask();
      s.n = mask.n;
      s.m = mask.m;
      const SparsityStats stats = measure_sparsity(w.dense(), s.n, s.m);
      s.zeros = stats.zeros;
      s.groups = stats.groups;
      s.compliant_groups = stats.compliant_groups;
      const LinearWeight& values = values_of(w);
      if (const auto* q = dynamic_cast<const QuantizedWeight*>(&values)) s.detail = q->spec().describe();
      if (const auto* g = dynamic_cast<const GgmlWeight*>(&values)) s.detail = tensor_type_name(g->type());
      if (const auto* low = dynamic_cast<const LowRankWeight*>(&values)) {
        s.rank = low->rank();
        s.detail = "rank " + std::to_string(s.rank) + (low->u()->kind() != "dense" ? " (" + low->u()->kind() + " factors)" : "");
      }
      if (s.kind == "sparse") s.detail = values.kind() + (s.detail.empty() ? "" : " " + s.detail);
      out.push_back(s);
    }
  }
  return out;
}

uint64_t bytes_on_disk(const std::string& path) {
  if (!fs::is_directory(path)) return fs::file_size(path);
  uint64_t total = 0;
  for (const auto& entry : fs::recursive_directory_iterator(path))
    if (entry.is_regular_file()) total += entry.file_size();
  return total;
}

nlohmann::json provenance(const SinkInput& input) {
  return {{"version", version()}, {"recipe", input.recipe_json}};
}

// ---- GGUF --------------------------------------------------------------------------------------

bool is_gguf_mix(const std::string& type) {
  for (const std::string& m : quant_mix_names())
    if (m == type) return true;
  return false;
}

// Embeddings and head that the stages left as the input stored them keep the input's blocks, and a head that
// trained as blocks (PEQA, QAT) keeps its own, so a fine-tuned Q4_K_M GGUF stays the size it was (their float
// values would otherwise be written at the output type).
void keep_input_blocks(const SinkInput& input, GgufModelOptions& options) {
  const Checkpoint& origin = input.origin;
  const Transformer* shell = input.shell;
  if (shell && shell->lm_head.defined())
    if (const auto* head = dynamic_cast<const GgmlWeight*>(shell->lm_head.weight.get()); head && ggml_can_encode(head->type())) {
      options.encoded["output.weight"] = {head->type(), head->bytes(), nullptr};
    }
  for (const std::string hf : {"model.embed_tokens.weight", "lm_head.weight"}) {
    if (options.encoded.count(gguf_tensor_name(hf))) continue;
    if (!origin.has(hf) || origin.format != CheckpointFormat::Gguf || !ggml_can_encode(origin.tensor(hf).type)) continue;
    if (shell) {
      const at::Tensor now = hf == "lm_head.weight" ? shell->lm_head.weight->dense() : shell->embed_tokens;
      if (!at::equal(now.detach().to(at::kCPU, at::kFloat), origin.load(hf))) continue;  // trained
    }
    options.encoded[gguf_tensor_name(hf)] = {origin.tensor(hf).type, at::Tensor(),
                                             [&origin, hf] { return origin.load_bytes(hf); }};
  }
}

void write_gguf(const SinkInput& input, OutputSummary& summary) {
  const ModelConfig& config = input.model.config();
  const std::string& mix = input.output.type;
  // The mix's choice for every tensor, to tell which ggml-block linears can be kept as they are.
  std::vector<TensorShape> shapes;
  for (const auto& [hf_name, shape] : expected_tensor_shapes(config)) {
    const std::string name = gguf_tensor_name(hf_name);
    if (!name.empty()) shapes.push_back({name, shape});
  }
  std::map<std::string, TensorType> chosen;
  if (is_gguf_mix(mix)) {
    for (const TensorTypeChoice& c : choose_tensor_types(config, shapes, mix, input.output.tensor_types))
      chosen[c.name] = c.type;
  } else {
    for (const TensorShape& s : shapes) chosen[s.name] = s.shape.size() == 1 ? TensorType::F32 : ggml_type_from_name(mix);
  }

  GgufModelOptions options;
  options.metadata["llmpress.version"] = version();
  if (!input.recipe_yaml.empty()) options.metadata["llmpress.recipe"] = input.recipe_yaml;
  if (!input.head_importance.empty()) options.importance["output.weight"] = input.head_importance;
  // Under a float output type the stages' blocks are the format (finetune, qat); a mix chooses for itself.
  if (input.keep_encoded && (mix == "F32" || mix == "F16" || mix == "BF16")) keep_input_blocks(input, options);
  std::map<std::string, int> conversions;  // note text -> number of tensors
  auto cache = std::make_shared<LayerCache>(input.model);
  std::vector<NamedTensor> tensors = model_tensors(input, cache, [&](int64_t i, const std::string& name,
                                                                    const LinearWeight& weight,
                                                                    std::vector<NamedTensor>& out) {
    const std::string hf = layer_prefix(i) + name + ".weight";
    const std::string gguf = gguf_tensor_name(hf);
    const LinearWeight& values = values_of(weight);
    const auto* blocks = dynamic_cast<const GgmlWeight*>(&values);
    if (blocks && ggml_can_encode(blocks->type()) && (blocks->type() == chosen.at(gguf) || input.keep_encoded)) {
      options.encoded[gguf] = {blocks->type(), at::Tensor(), [cache, i, name] {
                                 return dynamic_cast<const GgmlWeight&>(values_of(cache->weight(i, name))).bytes();
                               }};
      out.push_back(NamedTensor::lazy(hf, {weight.out_features(), weight.in_features()}, at::kFloat, nullptr));
      return;
    }
    if (blocks) conversions["ggml-block linears re-encoded from " + tensor_type_name(blocks->type()) + " to the mix's types"]++;
    else if (values.kind() == "int") conversions["integer-grid linears re-encoded (round to nearest) to the mix's types"]++;
    else if (values.kind() == "lowrank" || values.kind() == "tucker" || values.kind() == "cp")
      conversions["factorized linears multiplied back (llama.cpp runs no factorized layers)"]++;
    out.push_back(lazy_dense(cache, i, name, weight));
  });
  const Vocab vocab = load_tokenizer(input.origin)->to_vocab();
  std::vector<GgufTensorChoice> choices;
  if (is_gguf_mix(mix)) {
    choices = write_gguf_model_mix(input.output.path, config, tensors, vocab, mix, input.output.tensor_types, options);
  } else {
    choices = write_gguf_model(input.output.path, config, tensors, vocab, ggml_type_from_name(mix), options);
  }
  std::map<std::string, int> fallbacks;
  for (const GgufTensorChoice& c : choices)
    if (!c.note.empty() && c.gguf_name != "rope_freqs.weight") fallbacks[c.note]++;
  for (const auto& [note, count] : fallbacks) summary.notes.push_back(strprintf("%d tensor(s): %s", count, note.c_str()));
  for (const auto& [note, count] : conversions) summary.notes.push_back(strprintf("%d %s", count, note.c_str()));
  summary.description = "GGUF " + mix;
  // Stages chose the linears' block types under a float output type: say what was written.
  if (!options.encoded.empty() && (mix == "F32" || mix == "F16" || mix == "BF16")) {
    std::map<std::string, int> types;
    for (const GgufTensorChoice& c : choices) types[tensor_type_name(c.type)]++;
    std::string list;
    for (const auto& [type, count] : types) list += strprintf("%s%d %s", list.empty() ? "" : ", ", count, type.c_str());
    summary.description = "GGUF, tensors: " + list;
  }
}

// ---- Hugging Face folders ----------------------------------------------------------------------

void write_hf(const SinkInput& input, OutputSummary& summary) {
  const bool factorized = input.output.format == "factorized";
  HfCheckpointOptions options;
  const std::string& type = input.output.type;
  options.dtype = type == "F16" ? at::kHalf : type == "BF16" ? at::kBFloat16 : at::kFloat;
  nlohmann::json section = provenance(input);
  nlohmann::json ranks = nlohmann::json::object();
  int multiplied = 0;
  auto cache = std::make_shared<LayerCache>(input.model);
  std::vector<NamedTensor> tensors = model_tensors(input, cache, [&](int64_t i, const std::string& name,
                                                                    const LinearWeight& weight,
                                                                    std::vector<NamedTensor>& out) {
    const auto* low = dynamic_cast<const LowRankWeight*>(&weight);
    if (factorized && low) {
      const std::string full = layer_prefix(i) + name;
      ranks[full] = low->rank();
      const int64_t r = low->rank();
      out.push_back(NamedTensor::lazy(full + ".weight", {low->out_features(), low->in_features()}, at::kFloat, nullptr));
      options.replacements[full + ".weight"] = {
          lazy_float(full + ".weight_u", {low->out_features(), r},
                     [cache, i, name] { return dynamic_cast<const LowRankWeight&>(cache->weight(i, name)).u()->dense(); }),
          lazy_float(full + ".weight_v", {r, low->in_features()},
                     [cache, i, name] { return dynamic_cast<const LowRankWeight&>(cache->weight(i, name)).v()->dense(); })};
      return;
    }
    if (weight.kind() == "lowrank" || weight.kind() == "tucker" || weight.kind() == "cp") ++multiplied;
    out.push_back(lazy_dense(cache, i, name, weight));
  });
  if (factorized) {
    section["lowrank"] = {{"tensor_names", "NAME.weight_u [out, rank] x NAME.weight_v [rank, in]"}, {"ranks", ranks}};
    if (multiplied > 0)
      summary.notes.push_back(strprintf("%d Tucker/CP linears stored multiplied back (the factorized layout holds two "
                                        "factors only)", multiplied));
  } else if (multiplied > 0) {
    summary.notes.push_back(strprintf("%d factorized linears stored multiplied back (dense layout)", multiplied));
  }
  options.extra_config["llmpress"] = section;
  TokenizerFiles tokenizer_files;
  collect_tokenizer_files(input.origin, tokenizer_files);
  write_hf_checkpoint(input.output.path, input.model.config(), tensors, tokenizer_files.files, options);
  summary.description = factorized ? "Hugging Face safetensors, low-rank layers as factors" : "Hugging Face safetensors";
}

// ---- GPTQ --------------------------------------------------------------------------------------

const QuantizedWeight& int_grid_of(const LinearWeight& weight, const std::string& name, const std::string& target) {
  const auto* q = dynamic_cast<const QuantizedWeight*>(&values_of(weight));
  if (!q)
    throw Error(target + ": " + name + " is a " + weight.kind() + " weight; a GPTQ or AWQ checkpoint holds every decoder linear "
                "on an integer grid (quantize all of them with rtn or gptq, without type, or write another format)");
  return *q;
}

// GPTQ and AWQ checkpoints: the same integer grid (one per checkpoint), packed two ways.
void write_gptq(const SinkInput& input, OutputSummary& summary) {
  const bool awq = input.output.format == "awq";
  const std::string target = (awq ? "AWQ export to " : "GPTQ export to ") + input.output.path;
  const ModelConfig& config = input.model.config();
  // One pass to learn the grid and whether any zero point is 0 (then only gptq_v2 can store it).
  std::optional<IntGridSpec> spec;
  bool act_order = false, zero_minus_one = true;
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const DecoderLayer layer = input.model.load_layer(i, at::kCPU);
    for (const std::string& name : DecoderLayer::linear_names()) {
      const std::string full = layer_prefix(i) + name;
      const QuantizedWeight& q = int_grid_of(*layer.linear(name).weight, full, target);
      const IntGridSpec& s = q.spec();
      if (!spec) {
        spec = s;
        act_order = q.act_order();
      } else if (s.bits != spec->bits || s.group_size != spec->group_size || s.symmetric != spec->symmetric ||
                 q.act_order() != act_order) {
        throw Error(target + ": " + full + " is on a different grid than the other layers (the format has one)");
      }
      if (awq) check_awq_layer(target, full, s, q.act_order(), q.out_features(), q.in_features());
      else check_gptq_layer(target, full, s, q.out_features(), q.in_features());
      if (q.zeros().min().item<int64_t>() == 0) zero_minus_one = false;
    }
  }
  if (!awq && !zero_minus_one)
    summary.notes.push_back("some zero points are 0, which format gptq (v1) cannot store: written as gptq_v2, "
                            "which AutoGPTQ refuses and older vLLM misreads");

  HfCheckpointOptions options;
  options.dtype = at::kHalf;
  auto cache = std::make_shared<LayerCache>(input.model);
  std::vector<NamedTensor> tensors = model_tensors(input, cache, [&](int64_t i, const std::string& name,
                                                                    const LinearWeight& weight,
                                                                    std::vector<NamedTensor>& out) {
    const std::string module = layer_prefix(i) + name;
    const int64_t rows = weight.out_features(), cols = weight.in_features();
    const int bits = spec->bits;
    const int64_t groups = spec->group_size > 0 ? (cols + spec->group_size - 1) / spec->group_size : 1;
    out.push_back(NamedTensor::lazy(module + ".weight", {rows, cols}, at::kFloat, nullptr));
    const auto packed = [cache, i, name, module, zero_minus_one, awq](const std::string& suffix) {
      return [cache, i, name, module, zero_minus_one, awq, suffix] {
        const QuantizedWeight& q = int_grid_of(cache->weight(i, name), module, "");
        for (const NamedTensor& t : awq ? awq_packed_tensors(module, q) : gptq_packed_tensors(module, q, zero_minus_one))
          if (t.name == module + suffix) return t.tensor;
        throw Error("checkpoint packing made no " + module + suffix);
      };
    };
    if (awq)
      options.replacements[module + ".weight"] = {
          NamedTensor::lazy(module + ".qweight", {cols, rows / 8}, at::kInt, packed(".qweight")),
          NamedTensor::lazy(module + ".qzeros", {groups, rows / 8}, at::kInt, packed(".qzeros")),
          NamedTensor::lazy(module + ".scales", {groups, rows}, at::kHalf, packed(".scales"))};
    else
      options.replacements[module + ".weight"] = {
          NamedTensor::lazy(module + ".qweight", {cols * bits / 32, rows}, at::kInt, packed(".qweight")),
          NamedTensor::lazy(module + ".qzeros", {groups, rows * bits / 32}, at::kInt, packed(".qzeros")),
          NamedTensor::lazy(module + ".scales", {groups, rows}, at::kHalf, packed(".scales")),
          NamedTensor::lazy(module + ".g_idx", {cols}, at::kInt, packed(".g_idx"))};
  });
  const nlohmann::json quantizer = {{"quantizer", std::string("llmpress ") + version()}};
  nlohmann::json meta = quantizer;
  meta["true_sequential"] = true;
  options.extra_config["quantization_config"] =
      awq ? awq_quantization_config(*spec, quantizer) : gptq_quantization_config(*spec, act_order, zero_minus_one, meta);
  options.extra_config["llmpress"] = provenance(input);
  TokenizerFiles tokenizer_files;
  collect_tokenizer_files(input.origin, tokenizer_files);
  write_hf_checkpoint(input.output.path, config, tensors, tokenizer_files.files, options);
  summary.description = awq ? "AWQ checkpoint (gemm, " + spec->describe() + ")"
                            : std::string("GPTQ checkpoint (") + (zero_minus_one ? "gptq" : "gptq_v2") + ", " +
                                  spec->describe() + ")";
}

// ---- compressed-tensors sparse folders -------------------------------------------------------------

void write_sparse(const SinkInput& input, OutputSummary& summary) {
  const ModelConfig& config = input.model.config();
  const std::string& type = input.output.type;
  const at::ScalarType dtype = type == "F16" ? at::kHalf : type == "BF16" ? at::kBFloat16 : at::kFloat;
  // One pass for what the header needs before any data: which layers are pruned, how many values
  // each keeps (in the output dtype), and whether all of them are 2:4.
  std::map<std::string, int64_t> kept;
  bool all_24 = true;
  int64_t zeros = 0;
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const DecoderLayer layer = input.model.load_layer(i, at::kCPU);
    for (const std::string& name : DecoderLayer::linear_names()) {
      const LinearWeight& w = *layer.linear(name).weight;
      if (!w.pruning_mask().removed.defined()) continue;
      const at::Tensor values = w.dense().to(dtype);
      const int64_t nonzero = (values != 0).sum().item<int64_t>();
      kept[layer_prefix(i) + name] = nonzero;
      zeros += values.numel() - nonzero;
      const PruningMask mask = w.pruning_mask();
      all_24 = all_24 && mask.n == 2 && mask.m == 4 && measure_sparsity(values, 2, 4).compliant();
    }
  }
  if (kept.empty())
    throw Error("sparse export to " + input.output.path + ": no decoder linear layer is pruned; write hf instead");
  SparseFormat format = input.output.format == "sparse-24-bitmask" ? SparseFormat::Bitmask24
                        : input.output.format == "sparse-bitmask"  ? SparseFormat::Bitmask
                        : all_24                                   ? SparseFormat::Bitmask24
                                                                   : SparseFormat::Bitmask;
  if (format == SparseFormat::Bitmask24 && !all_24)
    throw Error("sparse-24-bitmask export to " + input.output.path + ": not every pruned layer is 2:4; use sparse-bitmask");

  HfCheckpointOptions options;
  options.dtype = dtype;
  std::vector<std::string> dense_linears;
  auto cache = std::make_shared<LayerCache>(input.model);
  std::vector<NamedTensor> tensors = model_tensors(input, cache, [&](int64_t i, const std::string& name,
                                                                    const LinearWeight& weight,
                                                                    std::vector<NamedTensor>& out) {
    const std::string module = layer_prefix(i) + name;
    const int64_t rows = weight.out_features(), cols = weight.in_features();
    if (!kept.count(module)) {
      dense_linears.push_back(module);
      out.push_back(lazy_dense(cache, i, name, weight));
      return;
    }
    out.push_back(NamedTensor::lazy(module + ".weight", {rows, cols}, at::kFloat, nullptr));
    const auto part = [cache, i, name, module, format, dtype](const std::string& suffix) {
      return [cache, i, name, module, format, dtype, suffix] {
        for (const NamedTensor& t : sparse_compressed_tensors(module, cache->weight(i, name).dense().to(dtype), format))
          if (t.name == module + suffix) return t.tensor;
        throw Error("sparse packing made no " + module + suffix);
      };
    };
    const int64_t mask_bytes = (cols + 7) / 8;
    std::vector<NamedTensor>& parts = options.replacements[module + ".weight"];
    if (format == SparseFormat::Bitmask) {
      parts = {NamedTensor::lazy(module + ".shape", {2}, at::kLong, part(".shape")),
               NamedTensor::lazy(module + ".compressed", {kept.at(module)}, dtype, part(".compressed")),
               NamedTensor::lazy(module + ".bitmask", {rows, mask_bytes}, at::kByte, part(".bitmask")),
               NamedTensor::lazy(module + ".row_offsets", {rows}, at::kLong, part(".row_offsets"))};
    } else {
      parts = {NamedTensor::lazy(module + ".shape", {2, 1}, at::kLong, part(".shape")),
               NamedTensor::lazy(module + ".compressed", {rows, cols / 2}, dtype, part(".compressed")),
               NamedTensor::lazy(module + ".bitmask", {rows, mask_bytes}, at::kByte, part(".bitmask"))};
    }
  });
  int64_t parameters = 0;
  for (const NamedTensor& t : tensors) parameters += t.tensor.numel();
  options.extra_config["quantization_config"] =
      sparse_quantization_config(format, parameters > 0 ? double(zeros) / double(parameters) : 0.0, dense_linears);
  options.extra_config["llmpress"] = provenance(input);
  TokenizerFiles tokenizer_files;
  collect_tokenizer_files(input.origin, tokenizer_files);
  write_hf_checkpoint(input.output.path, config, tensors, tokenizer_files.files, options);
  summary.description = std::string("compressed-tensors ") + sparse_format_name(format) + ", " +
                        std::to_string(kept.size()) + " pruned linears compressed";
}

void write_adapter(const SinkInput& input, OutputSummary& summary) {
  LoraAdapter adapter;
  adapter.base_model = input.origin.path;
  bool first = true;
  for (int64_t i = 0; i < input.model.config().num_layers; ++i) {
    const DecoderLayer layer = input.model.load_layer(i, at::kCPU);
    for (const auto& [name, lora] : lora_adapters(layer)) {
      if (!first && (lora->alpha() != adapter.alpha || lora->dropout() != adapter.dropout))
        throw Error("LoRA export to " + input.output.path + ": the adapters differ in alpha or dropout");
      adapter.alpha = lora->alpha();
      adapter.dropout = lora->dropout();
      first = false;
      adapter.tensors.push_back({layer_prefix(i) + name, lora->plain_a(), lora->b()});
    }
  }
  if (adapter.tensors.empty()) throw Error("LoRA export to " + input.output.path + ": no layer has an adapter");
  if (input.output.format == "gguf") write_gguf_lora(input.output.path, input.model.config(), adapter);
  else write_peft_adapter(input.output.path, input.model.config(), adapter);
  summary.description = strprintf("%s LoRA adapter: %zu linears, rank %lld, alpha %g",
                                  input.output.format == "gguf" ? "llama.cpp GGUF" : "PEFT", adapter.tensors.size(),
                                  (long long)adapter.rank(), adapter.alpha);
}

}  // namespace

OutputSpec resolve_output(OutputSpec output, const std::string& fallback_format) {
  const auto fail = [&](const std::string& problem) { return Error(output.where.describe() + ": " + problem); };
  if (output.path.empty()) throw fail("no output path (-o / output: path)");
  const std::string upper = [&] {
    std::string u = output.type;
    for (char& c : u) c = char(std::toupper(static_cast<unsigned char>(c)));
    return u;
  }();
  output.type = upper;
  const bool gguf_name = fs::path(output.path).extension() == ".gguf";
  const bool float_type = upper == "F32" || upper == "F16" || upper == "BF16";
  if (output.format.empty()) {
    if (gguf_name) output.format = "gguf";
    else if (!upper.empty() && !float_type) output.format = "gguf";  // a mix such as Q4_K_M means GGUF
    else output.format = fallback_format;
  }
  if (output.format == "dense") output.format = "hf";
  const std::set<std::string> formats = {"gguf", "hf", "factorized", "gptq", "awq", "sparse", "sparse-bitmask",
                                         "sparse-24-bitmask"};
  if (!formats.count(output.format))
    throw fail("unknown output format '" + output.format +
               "' (gguf, hf, factorized, gptq, awq, sparse: compressed-tensors sparse-bitmask or sparse-24-bitmask)");
  if (gguf_name && output.format != "gguf")
    throw fail("the output name " + output.path + " ends in .gguf but the format is " + output.format +
               "; name a folder for " + output.format + " output, or drop the format");
  if (output.format == "gguf") {
    if (output.type.empty()) output.type = "F32";
    if (!is_gguf_mix(output.type) && output.type != "BF16") {
      std::string known;
      for (const std::string& m : quant_mix_names()) known += m + ", ";
      throw fail("unknown GGUF type '" + output.type + "' (" + known + "BF16)");
    }
  } else {
    if (!output.tensor_types.empty()) throw fail("tensor_type overrides apply to GGUF output only");
    if ((output.format == "gptq" || output.format == "awq") && !output.type.empty())
      throw fail("a " + std::string(output.format == "awq" ? "AWQ" : "GPTQ") + " checkpoint has no type option (" + output.type + " is a " +
                 (float_type ? "float type" : "GGUF type") + "); drop it, or write GGUF with -o NAME.gguf");
    if (!output.type.empty() && !float_type)
      throw fail("type " + output.type + " is a GGUF type: write GGUF (-o NAME.gguf), or use F32, F16 or BF16 for " +
                 output.format + " output");
    if (output.type.empty()) output.type = "F32";
  }
  try {
    check_output_path(output.path, output.format != "gguf");
  } catch (const Error& e) {
    if (output.where.file.empty()) throw;  // the message names the path already
    throw fail(e.what());
  }
  return output;
}

OutputSummary write_model(const SinkInput& input) {
  OutputSummary summary;
  summary.path = input.output.path;
  summary.format = input.output.format;
  if (input.adapter) write_adapter(input, summary);
  else if (input.output.format == "gguf") write_gguf(input, summary);
  else if (input.output.format == "gptq" || input.output.format == "awq") write_gptq(input, summary);
  else if (input.output.format.rfind("sparse", 0) == 0) write_sparse(input, summary);
  else write_hf(input, summary);
  summary.bytes = bytes_on_disk(input.output.path);
  summary.linears = summarize_linears(input.model);
  const ModelConfig& config = input.model.config();
  summary.parameters = config.vocab_size * config.hidden_size * (config.tie_word_embeddings ? 1 : 2) + config.hidden_size;
  for (int64_t i = 0; i < config.num_layers; ++i) summary.parameters += 2 * config.hidden_size;
  for (const LinearSummary& s : summary.linears) summary.parameters += s.parameters;
  return summary;
}

}  // namespace llmpress

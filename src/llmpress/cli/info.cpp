// llmpress info: what a model file holds, without loading its weights.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <map>

#include "llmpress/cli/common.h"
#include "llmpress/prune/sparsity_report.h"

namespace llmpress::cli {

namespace {

struct InfoCommand {
  ModelOptions model;
  bool json = false;
  bool tensors = true;
  bool sparsity = false;
};

// Zeros of every 2-D tensor (loads each one), the N:M pattern it follows, and the totals over
// the decoder linear layers and the whole model.
void print_sparsity(const Checkpoint& checkpoint) {
  SparsityStats linears, all;
  std::printf("\n%-52s %9s %s\n", "tensor", "zeros", "pattern");
  for (const auto& [name, raw] : checkpoint.tensors) {
    if (raw.shape.size() != 2) continue;
    const at::Tensor w = checkpoint.load(name);
    const SparsityStats stats = measure_sparsity(w);
    const std::string pattern = detect_nm_pattern(w);
    std::printf("%-52s %8.2f%% %s\n", name.c_str(), 100 * stats.sparsity(), pattern.empty() ? "-" : pattern.c_str());
    all += stats;
    if (name.rfind("model.layers.", 0) == 0) linears += stats;
  }
  std::printf("sparsity        %.2f%% of decoder linear weights, %.2f%% of all matrix weights\n",
              100 * linears.sparsity(), 100 * all.sparsity());
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

void run(const InfoCommand& command) {
  const Checkpoint checkpoint = open_model(command.model);
  const ModelConfig& c = checkpoint.config;
  // GPTQ-packed layers are shown with their packed tensors' size.
  const auto type_of = [&](const std::string& name, const RawTensor& tensor) {
    const auto gptq = checkpoint.gptq_linears.find(name);
    return gptq == checkpoint.gptq_linears.end() ? tensor_type_name(tensor.type)
                                                 : "GPTQ" + std::to_string(gptq->second.bits);
  };
  const auto bytes_of = [&](const std::string& name, const RawTensor& tensor) {
    const auto gptq = checkpoint.gptq_linears.find(name);
    if (gptq == checkpoint.gptq_linears.end()) return tensor.nbytes;
    const GptqPackedLinear& l = gptq->second;
    return l.qweight.nbytes + l.qzeros.nbytes + l.scales.nbytes + l.g_idx.nbytes;
  };
  std::map<std::string, std::pair<int64_t, uint64_t>> by_type;  // type -> (tensors, bytes)
  int64_t stored_parameters = 0;
  for (const auto& [name, tensor] : checkpoint.tensors) {
    auto& entry = by_type[type_of(name, tensor)];
    entry.first += 1;
    entry.second += bytes_of(name, tensor);
    stored_parameters += tensor.numel();
  }

  // Factorized linear layers (llmpress lowrank): NAME.weight_u [out, r] with NAME.weight_v [r, in].
  std::map<std::string, int64_t> ranks;
  for (const auto& [name, tensor] : checkpoint.tensors)
    if (name.size() > 9 && name.compare(name.size() - 9, 9, ".weight_u") == 0 && tensor.shape.size() == 2)
      ranks[name.substr(0, name.size() - 9)] = tensor.shape[1];

  if (command.json) {
    nlohmann::json out;
    out["path"] = checkpoint.path;
    out["format"] = checkpoint_format_name(checkpoint.format);
    out["architecture"] = c.architecture;
    out["config"] = {{"vocab_size", c.vocab_size},           {"hidden_size", c.hidden_size},
                     {"intermediate_size", c.intermediate_size}, {"num_layers", c.num_layers},
                     {"num_heads", c.num_heads},             {"num_kv_heads", c.num_kv_heads},
                     {"head_dim", c.head_dim},               {"max_position_embeddings", c.max_position_embeddings},
                     {"rms_norm_eps", c.rms_norm_eps},       {"rope_theta", c.rope_theta},
                     {"rope_scaling", c.rope_scaling.type},  {"tie_word_embeddings", c.tie_word_embeddings},
                     {"attention_bias", c.attention_bias}};
    out["parameters"] = c.parameter_count();
    out["tokenizer"] = checkpoint.tokenizer_file.empty() ? (checkpoint.vocab ? "embedded" : "none")
                                                         : checkpoint.tokenizer_file;
    for (const auto& [type, entry] : by_type) out["bytes_by_type"][type] = entry.second;
    for (const auto& [name, rank] : ranks) out["low_rank"][name] = rank;
    if (command.tensors)
      for (const auto& [name, tensor] : checkpoint.tensors)
        out["tensors"].push_back(
            {{"name", name}, {"type", type_of(name, tensor)}, {"shape", tensor.shape}, {"bytes", bytes_of(name, tensor)}});
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }

  std::printf("path            %s\n", checkpoint.path.c_str());
  std::printf("format          %s\n", checkpoint_format_name(checkpoint.format));
  std::printf("architecture    %s\n", c.architecture.c_str());
  std::printf("vocab           %lld\n", (long long)c.vocab_size);
  std::printf("hidden          %lld\n", (long long)c.hidden_size);
  std::printf("intermediate    %lld\n", (long long)c.intermediate_size);
  std::printf("layers          %lld\n", (long long)c.num_layers);
  std::printf("heads           %lld (kv %lld, head_dim %lld)\n", (long long)c.num_heads, (long long)c.num_kv_heads,
              (long long)c.head_dim);
  std::printf("context         %lld\n", (long long)c.max_position_embeddings);
  std::printf("rms_norm_eps    %g\n", c.rms_norm_eps);
  std::printf("rope            theta %g, scaling %s\n", c.rope_theta, c.rope_scaling.type.c_str());
  std::printf("tied embeddings %s\n", c.tie_word_embeddings ? "yes" : "no");
  std::printf("tokenizer       %s\n", checkpoint.tokenizer_file.empty()
                                        ? (checkpoint.vocab ? "embedded in the file" : "none found")
                                        : checkpoint.tokenizer_file.c_str());
  std::printf("parameters      %lld (model), %lld stored\n", (long long)c.parameter_count(), (long long)stored_parameters);
  for (const auto& [type, entry] : by_type)
    std::printf("bytes %-9s %llu in %lld tensors\n", type.c_str(), (unsigned long long)entry.second,
                (long long)entry.first);
  if (!ranks.empty()) {
    std::printf("low-rank        %zu linear layers factorized\n\n%-52s %s\n", ranks.size(), "factorized layer", "rank");
    for (const auto& [name, rank] : ranks) std::printf("%-52s %lld\n", name.c_str(), (long long)rank);
  }
  if (command.sparsity) print_sparsity(checkpoint);
  if (command.tensors) {
    std::printf("\n%-52s %-6s %-16s %s\n", "tensor", "type", "shape", "bytes");
    for (const auto& [name, tensor] : checkpoint.tensors)
      std::printf("%-52s %-6s %-16s %llu\n", name.c_str(), type_of(name, tensor).c_str(),
                  shape_text(tensor.shape).c_str(), (unsigned long long)bytes_of(name, tensor));
  }
}

}  // namespace

void register_info(CLI::App& app) {
  auto command = std::make_shared<InfoCommand>();
  CLI::App* sub = app.add_subcommand("info", "architecture, hyper-parameters, sizes and tensors of a model");
  add_model_options(*sub, command->model);
  sub->add_flag("--json", command->json, "print as JSON");
  sub->add_flag("!--no-tensors", command->tensors, "omit the per-tensor list");
  sub->add_flag("--sparsity", command->sparsity,
                "load every matrix and report its fraction of zeros and the N:M pattern (2:4, 4:8) it follows");
  sub->callback([command] { run(*command); });
}

}  // namespace llmpress::cli

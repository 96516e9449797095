// llmpress prune: unstructured and N:M pruning (magnitude, Wanda, SparseGPT) through the sequential
// engine, written with the removed weights as zeros; structured pruning (attention heads, MLP
// channels, whole layers) that writes a genuinely smaller model. Output: Hugging Face folder or GGUF.
#include <cstdio>
#include <regex>
#include <filesystem>

#include "llmpress/calib/engine.h"
#include "llmpress/cli/common.h"
#include "llmpress/core/error.h"
#include "llmpress/data/calibration.h"
#include "llmpress/export/ggml_quantize.h"
#include "llmpress/export/gguf_writer.h"
#include "llmpress/export/safetensors_writer.h"
#include "llmpress/export/transformer_tensors.h"
#include "llmpress/model/transformer.h"
#include "llmpress/prune/layer_removal.h"
#include "llmpress/prune/magnitude.h"
#include "llmpress/prune/routing.h"
#include "llmpress/prune/sparsegpt.h"
#include "llmpress/prune/sparsity_report.h"
#include "llmpress/prune/wanda.h"
#include "llmpress/prune/width_pruning.h"

namespace llmpress::cli {

namespace {

struct PruneCommand {
  ModelOptions model;
  std::string output;
  std::string method = "sparsegpt";
  double sparsity = 0.5;
  std::string pattern;  // N:M, replaces --sparsity
  double ratio = 0.2;   // structured: fraction of heads / channels / layers removed
  int64_t count = -1;   // layers: number removed (replaces --ratio)
  std::string scope;    // row, layer, global; default: the method's own
  std::string skip;
  std::vector<std::string> sparsity_for;  // REGEX=S or REGEX=N:M, first match wins
  std::string format;   // hf or gguf; default from the output name
  std::string type = "F32";
  int bits = 0;         // sparsegpt: joint quantization of the kept weights
  int64_t group = 128;
  bool sym = false;
  bool keep_zeros = false;
  double damp = 0.01;
  int64_t block = 128;
  std::string calib_file;
  CalibrationOptions calib;
  int64_t batch_samples = 8;
  std::string work_dir;
  bool resume = false;
  bool verbose = false;
  bool no_progress = false;
};

MaskScope parse_scope(const std::string& scope) {
  if (scope == "row") return MaskScope::Row;
  if (scope == "layer") return MaskScope::Layer;
  throw Error("--scope " + scope + ": use row or layer (or global for magnitude)");
}

// The names (without ".weight") of every decoder linear layer the compressor will prune.
std::vector<std::string> pruned_linears(const ModelConfig& config, const RoutingCompressor* skip) {
  std::vector<std::string> names;
  for (int64_t i = 0; i < config.num_layers; ++i)
    for (const std::string& name : DecoderLayer::linear_names()) {
      const std::string full = "model.layers." + std::to_string(i) + "." + name;
      if (!skip || !skip->skips(full)) names.push_back(full);
    }
  return names;
}

std::unique_ptr<Compressor> make_pruner(const PruneCommand& command, const SparsityTarget& target,
                                        const Checkpoint& checkpoint) {
  if ((command.bits != 0 || command.keep_zeros) && command.method != "sparsegpt")
    throw Error("--bits (joint quantization) and --keep-zeros are only available with --method sparsegpt");
  if (command.method == "magnitude") {
    if (command.scope == "global") {
      if (target.semi_structured()) throw Error("--scope global does not apply to an N:M --pattern");
      // The threshold over every linear layer that will be pruned (one float32 copy of them).
      if (!command.sparsity_for.empty()) throw Error("--scope global uses one threshold; it does not combine with --sparsity-for");
      RoutingCompressor probe(std::make_unique<MagnitudeCompressor>(target, MaskScope::Layer), command.skip);
      std::vector<at::Tensor> weights;
      for (const std::string& name : pruned_linears(checkpoint.config, &probe))
        weights.push_back(checkpoint.load(name + ".weight"));
      return std::make_unique<MagnitudeCompressor>(global_magnitude_threshold(weights, target.sparsity));
    }
    return std::make_unique<MagnitudeCompressor>(target, parse_scope(command.scope.empty() ? "layer" : command.scope));
  }
  if (command.method == "wanda")
    return std::make_unique<WandaCompressor>(target, parse_scope(command.scope.empty() ? "row" : command.scope));
  if (command.method == "sparsegpt") {
    if (!command.scope.empty()) throw Error("--scope does not apply to sparsegpt (its mask is chosen per block)");
    SparseGptOptions options;
    options.target = target;
    options.percdamp = command.damp;
    options.block_size = command.block;
    options.keep_zeros = command.keep_zeros;
    if (command.bits != 0) {
      IntGridSpec grid;
      grid.bits = command.bits;
      grid.group_size = command.group;
      grid.symmetric = command.sym;
      options.grid = grid;
    }
    return std::make_unique<SparseGptCompressor>(options);
  }
  throw Error("--method: unknown method '" + command.method + "' (magnitude, wanda, sparsegpt, heads, channels, layers)");
}

struct TargetRule {
  std::string pattern;
  SparsityTarget target;
};

// "REGEX=0.3" or "REGEX=2:4" (split at the last '=').
std::vector<TargetRule> parse_target_rules(const std::vector<std::string>& texts) {
  std::vector<TargetRule> rules;
  for (const std::string& text : texts) {
    const size_t eq = text.rfind('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
      throw Error("--sparsity-for '" + text + "': expected REGEX=FRACTION or REGEX=N:M (e.g. 'mlp\\.=0.6')");
    const std::string value = text.substr(eq + 1);
    SparsityTarget target;
    if (value.find(':') != std::string::npos) {
      target = SparsityTarget::pattern(value);
    } else {
      size_t used = 0;
      double fraction = 0;
      try {
        fraction = std::stod(value, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != value.size()) throw Error("--sparsity-for '" + text + "': '" + value + "' is not a fraction or N:M");
      target = SparsityTarget::unstructured(fraction);
    }
    rules.push_back({text.substr(0, eq), target});
  }
  return rules;
}

std::string format_of(const PruneCommand& command) {
  if (!command.format.empty()) return command.format;
  return std::filesystem::path(command.output).extension() == ".gguf" ? "gguf" : "hf";
}

void write_output(const PruneCommand& command, const std::string& format, TensorType type,
                  const Checkpoint& checkpoint, const ModelConfig& config, const std::vector<NamedTensor>& tensors) {
  if (format == "gguf") {
    const auto vocab = load_tokenizer(checkpoint)->to_vocab();
    for (const GgufTensorChoice& choice : write_gguf_model(command.output, config, tensors, vocab, type))
      if (!choice.note.empty()) std::fprintf(stderr, "note: %s: %s\n", choice.gguf_name.c_str(), choice.note.c_str());
  } else {
    HfCheckpointOptions hf;
    hf.dtype = type == TensorType::F16 ? at::kHalf : type == TensorType::BF16 ? at::kBFloat16 : at::kFloat;
    TokenizerFiles tokenizer_files;
    collect_tokenizer_files(checkpoint, tokenizer_files);
    write_hf_checkpoint(command.output, config, tensors, tokenizer_files.files, hf);
  }
}

at::Tensor read_calibration(const PruneCommand& command, const Checkpoint& checkpoint) {
  const auto tokenizer = load_tokenizer(checkpoint);
  const std::vector<int32_t> stream = tokenizer->encode(read_calibration_text(command.calib_file));
  const at::Tensor tokens = calibration_windows(stream, command.calib, checkpoint.config.max_position_embeddings);
  std::fprintf(stderr, "%s: %zu tokens; %lld samples of %lld tokens (seed %llu)\n", command.calib_file.c_str(),
               stream.size(), (long long)tokens.size(0), (long long)tokens.size(1),
               (unsigned long long)command.calib.seed);
  return tokens;
}

// Heads, channels or layers: the whole model is loaded (one float32 copy), scored on the
// calibration data in one pass, cut down, and written with the smaller sizes in its config.
void run_structured(const PruneCommand& command, const std::string& format, TensorType type) {
  if (command.calib_file.empty())
    throw Error("--method " + command.method + " needs calibration text: --calib FILE (plain text or .jsonl)");
  if (!command.pattern.empty() || command.bits != 0 || !command.scope.empty() || !command.skip.empty() ||
      !command.sparsity_for.empty())
    throw Error("--pattern, --sparsity-for, --bits, --scope and --skip apply to magnitude, wanda and sparsegpt, not to --method " +
                command.method);
  const Checkpoint checkpoint = open_model(command.model);
  const at::Device device = parse_device(command.model.device);
  const at::Tensor tokens = read_calibration(command, checkpoint);
  Transformer model = Transformer::load(checkpoint, device);
  const int64_t before = model.parameter_count();
  const auto stats = collect_structure_stats(model, tokens, command.batch_samples, !command.no_progress);

  std::printf("%-6s %16s\n", "layer", "block influence");
  for (size_t i = 0; i < stats.size(); ++i) std::printf("%-6zu %16.6f\n", i, stats[i].block_influence);
  if (command.method == "layers") {
    const int64_t count =
        command.count >= 0 ? command.count : std::llround(command.ratio * double(model.config.num_layers));
    const std::vector<int64_t> removed = least_influential_layers(stats, count);
    std::string list;
    for (int64_t i : removed) list += (list.empty() ? "" : ", ") + std::to_string(i);
    remove_layers(model, removed);
    std::printf("removed %lld decoder layers (lowest block influence): %s\n", (long long)count,
                list.empty() ? "none" : list.c_str());
  } else if (command.method == "channels") {
    const int64_t removed = prune_mlp_channels(model, stats, command.ratio);
    std::printf("removed %lld MLP channels per layer (FLAP fluctuation, no bias compensation): intermediate %lld\n",
                (long long)removed, (long long)model.config.intermediate_size);
  } else {
    const int64_t kv_before = model.config.num_kv_heads;
    const int64_t removed = prune_attention_heads(model, stats, command.ratio);
    std::printf("removed %lld query heads and %lld kv heads per layer (FLAP fluctuation, no bias compensation): "
                "heads %lld, kv heads %lld\n",
                (long long)removed, (long long)(kv_before - model.config.num_kv_heads),
                (long long)model.config.num_heads, (long long)model.config.num_kv_heads);
  }
  write_output(command, format, type, checkpoint, model.config, transformer_tensors(model));
  const int64_t after = model.parameter_count();
  std::printf("parameters: %lld -> %lld (%.2f%% removed)\n", (long long)before, (long long)after,
              100.0 * double(before - after) / double(before));
  std::printf("wrote %s (%s, %s)\n", command.output.c_str(), format == "gguf" ? "GGUF" : "Hugging Face",
              command.type.c_str());
}

void run(PruneCommand command) {
  const SparsityTarget target =
      command.pattern.empty() ? SparsityTarget::unstructured(command.sparsity) : SparsityTarget::pattern(command.pattern);
  const std::string format = format_of(command);
  if (format != "hf" && format != "gguf") throw Error("--format " + format + ": use hf or gguf");
  const TensorType type = ggml_type_from_name(command.type);
  if (format == "hf" && type != TensorType::F32 && type != TensorType::F16 && type != TensorType::BF16)
    throw Error("--type " + command.type + ": Hugging Face safetensors hold F32, F16 or BF16 (use --format gguf)");
  const bool structured = command.method == "heads" || command.method == "channels" || command.method == "layers";
  if (!structured && command.method != "magnitude" && command.method != "wanda" && command.method != "sparsegpt")
    throw Error("--method: unknown method '" + command.method + "' (magnitude, wanda, sparsegpt, heads, channels, layers)");
  if (structured) return run_structured(command, format, type);
  const bool needs_calibration = command.method != "magnitude" || command.verbose;
  if (command.method != "magnitude" && command.calib_file.empty())
    throw Error("--method " + command.method + " needs calibration text: --calib FILE (plain text or .jsonl)");

  const Checkpoint checkpoint = open_model(command.model);
  const at::Device device = parse_device(command.model.device);
  RoutingCompressor pruner(make_pruner(command, target, checkpoint), command.skip);
  const std::vector<TargetRule> rules = parse_target_rules(command.sparsity_for);
  for (const TargetRule& rule : rules) pruner.add_rule(rule.pattern, make_pruner(command, rule.target, checkpoint));
  auto target_of = [&](const std::string& name) {
    for (const TargetRule& rule : rules)
      if (std::regex_search(name, std::regex(rule.pattern))) return rule.target;
    return target;
  };
  // Fail before any work when an N:M pattern cannot apply to a layer that will be pruned.
  for (const std::string& name : pruned_linears(checkpoint.config, &pruner))
    check_pattern_fits(target_of(name), checkpoint.tensor(name + ".weight").shape.back(), name);

  at::Tensor tokens = at::zeros({0, 1}, at::kLong);  // magnitude without --verbose: no samples to run
  if (!command.calib_file.empty() && !needs_calibration)
    std::fprintf(stderr, "note: magnitude pruning uses no calibration data; --calib only matters with --verbose\n");
  if (!command.calib_file.empty() && needs_calibration) tokens = read_calibration(command, checkpoint);
  std::fprintf(stderr, "pruning %s with %s\n", command.model.model.c_str(), pruner.describe().c_str());

  const Transformer shell = Transformer::load_shell(checkpoint, device);
  std::vector<NamedTensor> tensors = {{"model.embed_tokens.weight", shell.embed_tokens.to(at::kCPU)},
                                      {"model.norm.weight", shell.norm.to(at::kCPU)}};
  if (!shell.lm_head.weight->dense().is_same(shell.embed_tokens))
    tensors.push_back({"lm_head.weight", shell.lm_head.weight->dense().to(at::kCPU)});

  struct TensorSparsity {
    std::string name;
    SparsityStats stats;
    bool skipped;
  };
  std::vector<TensorSparsity> report;
  SparsityStats pruned_total, all_linears;
  EngineOptions options;
  options.device = device;
  options.batch_samples = command.batch_samples;
  options.measure_errors = command.verbose && tokens.size(0) > 0;
  options.work_dir = command.work_dir;
  options.resume = command.resume;
  options.progress = !command.no_progress;
  options.on_layer = [&](int64_t index, const DecoderLayer& layer, const at::Tensor&) {
    const std::string prefix = "model.layers." + std::to_string(index) + ".";
    tensors.push_back({prefix + "input_layernorm.weight", layer.input_norm.to(at::kCPU)});
    tensors.push_back({prefix + "post_attention_layernorm.weight", layer.post_attention_norm.to(at::kCPU)});
    for (const std::string& name : DecoderLayer::linear_names()) {
      const Linear& linear = layer.linear(name);
      const at::Tensor weight = linear.weight->dense().to(at::kCPU, at::kFloat);
      tensors.push_back({prefix + name + ".weight", weight});
      if (linear.bias.defined()) tensors.push_back({prefix + name + ".bias", linear.bias.to(at::kCPU)});
      const bool skipped = pruner.skips(prefix + name);
      const SparsityTarget layer_target = target_of(prefix + name);
      const SparsityStats stats = measure_sparsity(weight, layer_target.n, layer_target.m);
      report.push_back({prefix + name, stats, skipped});
      all_linears += stats;
      if (!skipped) pruned_total += stats;
    }
  };
  const EngineResult result = compress_sequential(checkpoint, shell, tokens, pruner, options);

  write_output(command, format, type, checkpoint, checkpoint.config, tensors);

  // The summary: measured on the weights as written before any GGUF block encoding.
  bool nm = target.semi_structured();
  for (const TargetRule& rule : rules) nm = nm || rule.target.semi_structured();
  std::map<std::string, const LinearReport*> errors;
  for (const LinearReport& r : result.linears) errors[r.name] = &r;
  std::printf("%-40s %9s%s%s\n", "tensor", "sparsity", nm ? "  N:M groups" : "",
              options.measure_errors ? "   ||dWX||^2   relative" : "");
  for (const TensorSparsity& t : report) {
    std::printf("%-40s %8.2f%%", t.name.c_str(), 100 * t.stats.sparsity());
    if (nm) {
      if (t.stats.groups > 0) std::printf("  %5.1f%% ok", 100.0 * double(t.stats.compliant_groups) / double(t.stats.groups));
      else std::printf("  %9s", "n/a");
    }
    if (options.measure_errors && errors.count(t.name))
      std::printf("  %11.5g %10.3e", errors[t.name]->output_error, errors[t.name]->relative_error);
    std::printf("%s\n", t.skipped ? "  (skipped)" : "");
  }
  const double total_params = double(checkpoint.config.parameter_count());
  std::printf("method: %s\n", pruner.describe().c_str());
  std::printf("pruned linear layers: %lld of %lld weights zero (%.2f%%)\n", (long long)pruned_total.zeros,
              (long long)pruned_total.total, 100 * pruned_total.sparsity());
  std::printf("all decoder linear layers: %.2f%% zero; whole model (embeddings, norms, head dense): %.2f%% zero\n",
              100 * all_linears.sparsity(), 100 * double(all_linears.zeros) / total_params);
  if (nm)
    std::printf("%s compliance of pruned layers: %lld of %lld groups (%s)\n",
                rules.empty() ? target.describe().c_str() : "N:M",
                (long long)pruned_total.compliant_groups, (long long)pruned_total.groups,
                pruned_total.compliant() ? "all" : "NOT all");
  if (!pruner.skipped().empty()) std::printf("skipped: %zu linear layers matching --skip\n", pruner.skipped().size());
  std::printf("time: %.1f s (%lld layers resumed)\n", result.seconds, (long long)result.resumed_layers);
  std::printf("wrote %s (%s, %s, zeros in place)\n", command.output.c_str(), format == "gguf" ? "GGUF" : "Hugging Face",
              command.type.c_str());
}

}  // namespace

void register_prune(CLI::App& app) {
  auto command = std::make_shared<PruneCommand>();
  CLI::App* sub = app.add_subcommand(
      "prune", "pruning: unstructured and N:M (magnitude, Wanda, SparseGPT), attention heads, MLP channels, layers");
  add_model_options(*sub, command->model);
  sub->add_option("-o,--output", command->output, "output: a folder (Hugging Face safetensors) or FILE.gguf")
      ->required();
  sub->add_option("--method", command->method,
                  "magnitude (|w|), wanda (|w| x input norm, per output row), sparsegpt (Hessian-based, with "
                  "weight reconstruction); structured, writing a smaller model: heads (attention heads, whole kv "
                  "groups or the same number of query heads from each), channels (MLP intermediate channels), "
                  "layers (whole decoder layers, lowest block influence 1 - cos(input, output))")
      ->capture_default_str();
  sub->add_option("--sparsity", command->sparsity, "fraction of each pruned linear layer's weights removed")
      ->capture_default_str();
  sub->add_option("--pattern", command->pattern,
                  "N:M instead of --sparsity: at most N nonzeros in every M consecutive input weights (2:4, 4:8)");
  sub->add_option("--ratio", command->ratio,
                  "heads, channels, layers: fraction of the units removed, the same in every layer (rounded)")
      ->capture_default_str();
  sub->add_option("--count", command->count, "layers: number of decoder layers removed (instead of --ratio)");
  sub->add_option("--scope", command->scope,
                  "where the fraction is counted: row or layer (magnitude default: layer; wanda default: row); "
                  "magnitude also global (one threshold for the whole model, holds a float32 copy of all weights)");
  sub->add_option("--skip", command->skip,
                  "leave linear layers whose name matches this regex dense (e.g. 'layers\\.0\\.|down_proj'); "
                  "embeddings and head are never pruned");
  sub->add_option("--sparsity-for", command->sparsity_for,
                  "REGEX=S or REGEX=N:M: another target for the linear layers whose name matches REGEX (first "
                  "match wins; repeatable), e.g. 'mlp\\.=0.6' or 'self_attn=2:4'");
  sub->add_option("--format", command->format, "hf or gguf (default: from the output name)");
  sub->add_option("--type", command->type,
                  "element type: F32, F16, BF16 (hf, gguf) or a GGUF block type (Q8_0, Q4_0, ...; zeros stay zero "
                  "only in types without an offset, such as Q8_0 and Q4_0)")
      ->capture_default_str();
  sub->add_option("--bits", command->bits,
                  "sparsegpt: also quantize the kept weights onto an integer grid of this many bits in the same "
                  "pass (written dequantized)");
  sub->add_flag("--keep-zeros", command->keep_zeros,
                "sparsegpt: weights already zero stay zero (quantize an already pruned model: --sparsity 0 --bits 4 "
                "--keep-zeros is GPTQ that keeps its mask)");
  sub->add_option("--group", command->group, "with --bits: input columns per grid group; -1: per output row")
      ->capture_default_str();
  sub->add_flag("--sym", command->sym, "with --bits: symmetric grid");
  sub->add_option("--damp", command->damp, "sparsegpt: dampening, fraction of the mean Hessian diagonal")
      ->capture_default_str();
  sub->add_option("--block", command->block, "sparsegpt: columns whose mask is chosen together")->capture_default_str();
  sub->add_option("--calib", command->calib_file,
                  "calibration text (plain text or .jsonl with a \"text\" field); needed by every method but "
                  "magnitude");
  sub->add_option("--nsamples", command->calib.nsamples, "calibration windows")->capture_default_str();
  sub->add_option("--seqlen", command->calib.seqlen, "tokens per window (capped at the model's context)")
      ->capture_default_str();
  sub->add_option("--seed", command->calib.seed, "seed of the window draw")->capture_default_str();
  sub->add_option("--batch", command->batch_samples, "calibration windows per forward pass")->capture_default_str();
  sub->add_option("--work-dir", command->work_dir, "save each finished layer here (for --resume)");
  sub->add_flag("--resume", command->resume, "continue from the last finished layer in --work-dir");
  sub->add_flag("--verbose", command->verbose, "per-layer output error ||(W-W')X||^2 on the calibration data");
  sub->add_flag("--no-progress", command->no_progress, "no progress line on stderr");
  sub->callback([command] { run(*command); });
}

}  // namespace llmpress::cli

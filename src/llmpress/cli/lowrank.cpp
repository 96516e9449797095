// llmpress lowrank: low-rank factorization of the linear layers (SVD, ASVD, SVD-LLM) through the
// sequential engine, written as a factorized or dense Hugging Face folder, or a dense GGUF.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>

#include "llmpress/calib/engine.h"
#include "llmpress/cli/common.h"
#include "llmpress/core/error.h"
#include "llmpress/data/calibration.h"
#include "llmpress/export/gguf_writer.h"
#include "llmpress/export/safetensors_writer.h"
#include "llmpress/lowrank/asvd.h"
#include "llmpress/lowrank/factorized_export.h"
#include "llmpress/lowrank/low_rank_compressor.h"
#include "llmpress/lowrank/rank_allocation.h"
#include "llmpress/lowrank/svd.h"
#include "llmpress/lowrank/svd_llm.h"
#include "llmpress/lowrank/tucker_compressor.h"
#include "llmpress/model/transformer.h"

namespace llmpress::cli {

namespace {

struct LowRankCommand {
  ModelOptions model;
  std::string output;
  std::string method = "svd-llm";
  std::string format = "factorized";
  double ratio = -1;
  int64_t rank = 0;
  std::vector<std::string> overrides;
  bool allocate = false;
  double alpha = 0.5;
  double damp = 0.0;
  int factor_bits = 0;
  int64_t factor_group = 128;
  bool factor_sym = false;
  std::string calib_file;
  CalibrationOptions calib;
  int64_t batch_samples = 8;
  std::string work_dir;
  bool resume = false;
  bool verbose = false;
  bool no_progress = false;
};

std::shared_ptr<const MatrixFactorizer> make_factorizer(const LowRankCommand& command) {
  if (command.method == "svd") return std::make_shared<SvdFactorizer>();
  if (command.method == "asvd") return std::make_shared<AsvdFactorizer>(command.alpha);
  if (command.method == "svd-llm") {
    SvdLlmOptions options;
    options.percdamp = command.damp;
    return std::make_shared<SvdLlmFactorizer>(options);
  }
  throw Error("--method: unknown method '" + command.method + "' (svd, asvd, svd-llm, tucker)");
}

double mib(double bits) { return bits / 8.0 / 1048576.0; }

void run(LowRankCommand command) {
  if (command.format == "factorized-gguf" || command.format == "gguf-factorized")
    throw Error("--format " + command.format + ": llama.cpp cannot run a GGUF with factorized (two-factor) linear "
                "layers, so llmpress does not write one; use --format gguf for a dense GGUF (factors multiplied "
                "back) or --format factorized for a factorized safetensors folder");
  if (command.format != "factorized" && command.format != "dense" && command.format != "gguf")
    throw Error("--format: unknown format '" + command.format + "' (factorized, dense, gguf)");
  if (command.ratio >= 0 && command.rank > 0) throw Error("--ratio and --rank exclude each other; give one");
  if (command.allocate && command.ratio < 0) throw Error("--allocate distributes a parameter budget: give --ratio R");
  const bool tucker = command.method == "tucker";
  if (tucker) {
    if (command.ratio < 0) throw Error("--method tucker needs --ratio R (fraction of each attention projection kept)");
    if (command.rank > 0 || !command.overrides.empty() || command.allocate || command.factor_bits > 0)
      throw Error("--method tucker takes only --ratio (no --rank, --override, --allocate or --bits)");
    if (command.format == "factorized")
      throw Error("--method tucker: there is no factorized safetensors layout for Tucker layers; use --format dense "
                  "or gguf (the reported size is the Tucker size)");
  }
  std::shared_ptr<const MatrixFactorizer> factorizer;
  if (!tucker) factorizer = make_factorizer(command);
  const bool needs_calibration = (factorizer && (factorizer->needs().hessian || factorizer->needs().input_norms)) ||
                                 command.allocate || command.verbose;
  if (needs_calibration && command.calib_file.empty())
    throw Error("--method " + command.method + (command.allocate ? " with --allocate" : "") +
                (command.verbose ? " with --verbose" : "") +
                " needs calibration text: --calib FILE (plain text or .jsonl)");
  if (!needs_calibration && !command.calib_file.empty())
    std::fprintf(stderr, "note: plain svd uses no calibration data; --calib only matters with --allocate or --verbose\n");

  RankSpec ranks;
  ranks.ratio = command.ratio;
  ranks.rank = command.rank;
  for (const std::string& text : command.overrides) ranks.overrides.push_back(parse_rank_override(text));
  ranks.check();
  std::optional<IntGridSpec> grid;
  if (command.factor_bits > 0) {
    IntGridSpec spec;
    spec.bits = command.factor_bits;
    spec.group_size = command.factor_group;
    spec.symmetric = command.factor_sym;
    spec.check();
    grid = spec;
  }

  const Checkpoint checkpoint = open_model(command.model);
  const at::Device device = parse_device(command.model.device);
  at::Tensor tokens = at::zeros({0, 1}, at::kLong);
  if (needs_calibration) {
    const auto tokenizer = load_tokenizer(checkpoint);
    const std::vector<int32_t> stream = tokenizer->encode(read_calibration_text(command.calib_file));
    tokens = calibration_windows(stream, command.calib, checkpoint.config.max_position_embeddings);
    std::fprintf(stderr, "%s: %zu tokens; %lld samples of %lld tokens (seed %llu)\n", command.calib_file.c_str(),
                 stream.size(), (long long)tokens.size(0), (long long)tokens.size(1),
                 (unsigned long long)command.calib.seed);
  }

  const Transformer shell = Transformer::load_shell(checkpoint, device);
  EngineOptions options;
  options.device = device;
  options.batch_samples = command.batch_samples;
  options.progress = !command.no_progress;

  double allocation_seconds = 0;
  if (command.allocate) {
    std::fprintf(stderr, "measuring per-layer spectra for rank allocation (%s)\n", factorizer->describe().c_str());
    const auto start = std::chrono::steady_clock::now();
    ranks.allocated = allocate_ranks(measure_spectra(checkpoint, shell, tokens, *factorizer, options), command.ratio);
    allocation_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  std::unique_ptr<Compressor> compressor;
  if (tucker) compressor = std::make_unique<TuckerCompressor>(command.ratio, checkpoint.config.head_dim);
  else compressor = std::make_unique<LowRankCompressor>(factorizer, ranks, grid);
  std::fprintf(stderr, "factorizing %s with %s\n", command.model.model.c_str(), compressor->describe().c_str());

  std::vector<NamedTensor> tensors = {{"model.embed_tokens.weight", shell.embed_tokens.to(at::kCPU)},
                                      {"model.norm.weight", shell.norm.to(at::kCPU)}};
  if (!shell.lm_head.weight->dense().is_same(shell.embed_tokens))
    tensors.push_back({"lm_head.weight", shell.lm_head.weight->dense().to(at::kCPU)});
  HfCheckpointOptions hf_options;
  nlohmann::json rank_list = nlohmann::json::object();
  int64_t linear_before = 0, linear_after = 0, linear_bits = 0, factorized_layers = 0, total_layers = 0;
  options.measure_errors = command.verbose;
  options.work_dir = command.work_dir;
  options.resume = command.resume;
  options.on_layer = [&](int64_t index, const DecoderLayer& layer, const at::Tensor&) {
    const std::string prefix = "model.layers." + std::to_string(index) + ".";
    tensors.push_back({prefix + "input_layernorm.weight", layer.input_norm.to(at::kCPU)});
    tensors.push_back({prefix + "post_attention_layernorm.weight", layer.post_attention_norm.to(at::kCPU)});
    for (const std::string& name : DecoderLayer::linear_names()) {
      const Linear& linear = layer.linear(name);
      const auto* low = dynamic_cast<const LowRankWeight*>(linear.weight.get());
      total_layers += 1;
      linear_before += linear.weight->in_features() * linear.weight->out_features();
      linear_after += linear.weight->parameter_count();
      linear_bits += linear.weight->kind() == "dense" ? linear.weight->parameter_count() * 16
                                                      : linear.weight->storage_bits();
      if (low) rank_list[prefix + name] = low->rank();
      if (linear.weight->kind() != "dense") factorized_layers += 1;
      if (low && command.format == "factorized") {
        add_factorized_layer(prefix + name, low->u()->dense(), low->v()->dense(), tensors, hf_options);
      } else {
        tensors.push_back({prefix + name + ".weight", linear.weight->dense().to(at::kCPU, at::kFloat)});
      }
      if (linear.bias.defined()) tensors.push_back({prefix + name + ".bias", linear.bias.to(at::kCPU)});
    }
  };
  const EngineResult result = compress_sequential(checkpoint, shell, tokens, *compressor, options);

  if (command.format == "gguf") {
    const Vocab vocab = load_tokenizer(checkpoint)->to_vocab();
    write_gguf_model(command.output, checkpoint.config, tensors, vocab, TensorType::F32);
  } else {
    nlohmann::json section = {{"lowrank", {{"method", compressor->describe()},
                                           {"format", command.format},
                                           {"tensor_names", "NAME.weight_u [out, rank] x NAME.weight_v [rank, in]"},
                                           {"ranks", rank_list}}}};
    if (grid) section["lowrank"]["factor_quantization"] = grid->describe() + " (stored dequantized)";
    hf_options.extra_config["llmpress"] = section;
    TokenizerFiles tokenizer_files;
    collect_tokenizer_files(checkpoint, tokenizer_files);
    write_hf_checkpoint(command.output, checkpoint.config, tensors, tokenizer_files.files, hf_options);
  }

  if (command.verbose) {
    std::printf("%-40s %-8s %6s %12s %10s\n", "layer", "kind", "rank", "||dWX||^2", "relative");
    for (const LinearReport& r : result.linears) {
      const std::string rank = rank_list.contains(r.name) ? std::to_string(rank_list[r.name].get<int64_t>()) : "-";
      std::printf("%-40s %-8s %6s %12.5g %10.3e\n", r.name.c_str(), r.kind.c_str(), rank.c_str(), r.output_error,
                  r.relative_error);
    }
  }
  // Sizes as an fp16 checkpoint stores them; quantized factors at their packed size.
  const double total_before = double(checkpoint.config.parameter_count());
  const double other = total_before - double(linear_before);
  std::printf("method: %s\n", compressor->describe().c_str());
  std::printf("factorized linear layers: %lld of %lld\n", (long long)factorized_layers, (long long)total_layers);
  std::printf("linear parameters: %lld -> %lld (ratio %.4f)\n", (long long)linear_before, (long long)linear_after,
              linear_before > 0 ? double(linear_after) / double(linear_before) : 0.0);
  std::printf("model parameters: %.0f -> %.0f (ratio %.4f)\n", total_before, other + double(linear_after),
              (other + double(linear_after)) / total_before);
  std::printf("model size: %.3f MiB at 16 bits -> %.3f MiB\n", mib(total_before * 16), mib(other * 16 + double(linear_bits)));
  std::printf("time: %.1f s (allocation %.1f s, %lld layers resumed)\n", result.seconds + allocation_seconds,
              allocation_seconds, (long long)result.resumed_layers);
  std::printf("wrote %s (%s)\n", command.output.c_str(),
              command.format == "factorized" ? (grid ? "factorized safetensors, factors stored dequantized"
                                                     : "factorized safetensors")
              : command.format == "dense"    ? "dense safetensors, factors multiplied back"
                                             : "dense GGUF F32, factors multiplied back");
}

}  // namespace

void register_lowrank(CLI::App& app) {
  auto command = std::make_shared<LowRankCommand>();
  CLI::App* sub = app.add_subcommand("lowrank", "low-rank factorization of the linear layers (SVD, ASVD, SVD-LLM)");
  add_model_options(*sub, command->model);
  sub->add_option("-o,--output", command->output, "output folder (Hugging Face) or .gguf file")->required();
  sub->add_option("--method", command->method,
                  "svd, asvd, svd-llm, or tucker (attention projections as heads x head_dim x hidden tensors; "
                  "MLP left dense)")
      ->capture_default_str();
  sub->add_option("--format", command->format,
                  "factorized (safetensors with NAME.weight_u [out,r] and NAME.weight_v [r,in]), dense "
                  "(safetensors, factors multiplied back) or gguf (dense; llama.cpp cannot run factorized layers)")
      ->capture_default_str();
  sub->add_option("--ratio", command->ratio,
                  "fraction of each linear layer's parameters kept, both factors counted (e.g. 0.8)");
  sub->add_option("--rank", command->rank, "the same rank for every linear layer");
  sub->add_option("--override", command->overrides,
                  "REGEX=RANK for the layers whose full name matches (first match wins; 0 keeps a layer dense); "
                  "repeatable");
  sub->add_flag("--allocate", command->allocate,
                "allocate ranks by measured output error per parameter under the global --ratio budget "
                "(one extra calibration pass)");
  sub->add_option("--alpha", command->alpha, "asvd: exponent of mean|x| in the input scaling")->capture_default_str();
  sub->add_option("--damp", command->damp,
                  "svd-llm: dampening of the Hessian, fraction of its mean diagonal (grows on Cholesky failure)")
      ->capture_default_str();
  sub->add_option("--bits", command->factor_bits, "round both factors to this many bits (RTN, 2..8); 0: no")
      ->capture_default_str();
  sub->add_option("--group", command->factor_group, "factor quantization: columns per group; -1: per row")
      ->capture_default_str();
  sub->add_flag("--sym", command->factor_sym, "factor quantization: symmetric grid");
  sub->add_option("--calib", command->calib_file, "calibration text (plain text or .jsonl with a \"text\" field)");
  sub->add_option("--nsamples", command->calib.nsamples, "calibration windows")->capture_default_str();
  sub->add_option("--seqlen", command->calib.seqlen, "tokens per window (capped at the model's context)")
      ->capture_default_str();
  sub->add_option("--seed", command->calib.seed, "seed of the window draw")->capture_default_str();
  sub->add_option("--batch", command->batch_samples, "calibration windows per forward pass")->capture_default_str();
  sub->add_option("--work-dir", command->work_dir, "save each finished layer here (for --resume)");
  sub->add_flag("--resume", command->resume, "continue from the last finished layer in --work-dir");
  sub->add_flag("--verbose", command->verbose, "per-layer ranks and output error ||(W-W')X||^2");
  sub->add_flag("--no-progress", command->no_progress, "no progress line on stderr");
  sub->callback([command] { run(*command); });
}

}  // namespace llmpress::cli

// llmpress quantize: post-training quantization (RTN, GPTQ) through the sequential engine.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>

#include "llmpress/calib/engine.h"
#include "llmpress/cli/common.h"
#include "llmpress/core/error.h"
#include "llmpress/data/calibration.h"
#include "llmpress/export/safetensors_writer.h"
#include "llmpress/model/transformer.h"
#include "llmpress/quant/gptq.h"
#include "llmpress/quant/rtn.h"

namespace llmpress::cli {

namespace {

namespace fs = std::filesystem;

struct QuantizeCommand {
  ModelOptions model;
  std::string output;
  std::string method = "gptq";
  std::string format = "dense";
  GptqOptions gptq;
  std::string calib_file;
  CalibrationOptions calib;
  int64_t batch_samples = 8;
  std::string work_dir;
  bool resume = false;
  bool verbose = false;
  bool no_progress = false;
};

double mib(double bits) { return bits / 8.0 / 1048576.0; }

void run(QuantizeCommand command) {
  if (command.format == "gguf" || command.format == "gptq")
    throw Error("--format " + command.format + " is not available yet (it needs the packed block writers); "
                "use --format dense for a fake-quantized checkpoint");
  if (command.format != "dense") throw Error("--format: unknown format '" + command.format + "' (dense)");
  if (command.method != "rtn" && command.method != "gptq")
    throw Error("--method: unknown method '" + command.method + "' (rtn, gptq)");
  if (command.method == "gptq" && command.calib_file.empty())
    throw Error("--method gptq needs calibration text: --calib FILE (plain text or .jsonl)");
  command.gptq.grid.check();

  const Checkpoint checkpoint = open_model(command.model);
  const at::Device device = parse_device(command.model.device);
  std::unique_ptr<Compressor> compressor;
  if (command.method == "rtn") compressor = std::make_unique<RtnCompressor>(command.gptq.grid);
  else compressor = std::make_unique<GptqCompressor>(command.gptq);

  at::Tensor tokens = at::zeros({0, 1}, at::kLong);  // RTN without calibration: no samples to run
  // RTN reads no statistics: its calibration text only serves the --verbose error report.
  const bool needs_calibration = command.method == "gptq" || command.verbose;
  if (!command.calib_file.empty() && !needs_calibration)
    std::fprintf(stderr, "note: rtn uses no calibration data; --calib only matters with --verbose\n");
  if (!command.calib_file.empty() && needs_calibration) {
    const auto tokenizer = load_tokenizer(checkpoint);
    const std::vector<int32_t> stream = tokenizer->encode(read_calibration_text(command.calib_file));
    tokens = calibration_windows(stream, command.calib, checkpoint.config.max_position_embeddings);
    std::fprintf(stderr, "%s: %zu tokens; %lld samples of %lld tokens (seed %llu)\n", command.calib_file.c_str(),
                 stream.size(), (long long)tokens.size(0), (long long)tokens.size(1),
                 (unsigned long long)command.calib.seed);
  }
  std::fprintf(stderr, "quantizing %s with %s\n", command.model.model.c_str(), compressor->describe().c_str());

  const Transformer shell = Transformer::load_shell(checkpoint, device);
  std::vector<NamedTensor> tensors = {{"model.embed_tokens.weight", shell.embed_tokens.to(at::kCPU)},
                                      {"model.norm.weight", shell.norm.to(at::kCPU)}};
  if (!shell.lm_head.weight->dense().is_same(shell.embed_tokens))
    tensors.push_back({"lm_head.weight", shell.lm_head.weight->dense().to(at::kCPU)});
  int64_t quantized_bits = 0, quantized_params = 0;
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
      tensors.push_back({prefix + name + ".weight", linear.weight->dense().to(at::kCPU, at::kFloat)});
      if (linear.bias.defined()) tensors.push_back({prefix + name + ".bias", linear.bias.to(at::kCPU)});
      quantized_bits += linear.weight->storage_bits();
      quantized_params += linear.weight->in_features() * linear.weight->out_features();
    }
  };
  const EngineResult result = compress_sequential(checkpoint, shell, tokens, *compressor, options);

  TokenizerFiles tokenizer_files;
  collect_tokenizer_files(checkpoint, tokenizer_files);
  write_hf_checkpoint(command.output, checkpoint.config, tensors, tokenizer_files.files);

  // Sizes as a packed format would store them: quantized linears at their exact storage size,
  // everything else (embeddings, norms, head) at 16 bits. The dense output itself is float32.
  const double total_params = double(checkpoint.config.parameter_count());
  const double other_params = total_params - double(quantized_params);
  const double before = total_params * 16, after = double(quantized_bits) + other_params * 16;
  if (command.verbose) {
    std::printf("%-40s %12s %10s\n", "layer", "||dWX||^2", "relative");
    for (const LinearReport& r : result.linears)
      std::printf("%-40s %12.5g %10.3e\n", r.name.c_str(), r.output_error, r.relative_error);
  }
  std::printf("method: %s\n", compressor->describe().c_str());
  std::printf("quantized linear weights: %lld parameters, %.3f bits/weight\n", (long long)quantized_params,
              quantized_params > 0 ? double(quantized_bits) / double(quantized_params) : 0.0);
  std::printf("model size: %.2f MiB at 16 bits -> %.2f MiB (%.2f bits/weight overall)\n", mib(before), mib(after),
              after / total_params);
  std::printf("time: %.1f s (%lld layers resumed)\n", result.seconds, (long long)result.resumed_layers);
  std::printf("wrote %s (dense fake-quantized safetensors)\n", command.output.c_str());
}

}  // namespace

void register_quantize(CLI::App& app) {
  auto command = std::make_shared<QuantizeCommand>();
  CLI::App* sub = app.add_subcommand("quantize", "post-training quantization (RTN, GPTQ) to an integer grid");
  add_model_options(*sub, command->model);
  sub->add_option("-o,--output", command->output, "output folder (Hugging Face checkpoint)")->required();
  sub->add_option("--method", command->method, "rtn or gptq")->capture_default_str();
  sub->add_option("--format", command->format, "dense (fake-quantized safetensors); gguf and gptq: not yet")
      ->capture_default_str();
  sub->add_option("--bits", command->gptq.grid.bits, "bits per weight, 2..8")->capture_default_str();
  sub->add_option("--group", command->gptq.grid.group_size, "input columns per group; -1: per output channel")
      ->capture_default_str();
  sub->add_flag("--sym", command->gptq.grid.symmetric, "symmetric grid (zero point fixed at 2^(bits-1))");
  sub->add_flag("--act-order", command->gptq.act_order, "gptq: columns in order of decreasing Hessian diagonal");
  sub->add_flag("--static-groups", command->gptq.static_groups, "gptq: fit all group grids before quantizing");
  sub->add_option("--damp", command->gptq.percdamp, "gptq: dampening, fraction of the mean Hessian diagonal")
      ->capture_default_str();
  sub->add_option("--block", command->gptq.block_size, "gptq: columns per lazy update block")->capture_default_str();
  sub->add_option("--calib", command->calib_file, "calibration text (plain text or .jsonl with a \"text\" field)");
  sub->add_option("--nsamples", command->calib.nsamples, "calibration windows")->capture_default_str();
  sub->add_option("--seqlen", command->calib.seqlen, "tokens per window (capped at the model's context)")
      ->capture_default_str();
  sub->add_option("--seed", command->calib.seed, "seed of the window draw")->capture_default_str();
  sub->add_option("--batch", command->batch_samples, "calibration windows per forward pass")->capture_default_str();
  sub->add_option("--work-dir", command->work_dir, "save each finished layer here (for --resume)");
  sub->add_flag("--resume", command->resume, "continue from the last finished layer in --work-dir");
  sub->add_flag("--verbose", command->verbose, "per-layer output error ||(W-Q)X||^2 on the calibration data");
  sub->add_flag("--no-progress", command->no_progress, "no progress line on stderr");
  sub->callback([command] { run(*command); });
}

}  // namespace llmpress::cli

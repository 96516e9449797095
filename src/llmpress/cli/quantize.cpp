// llmpress quantize: post-training quantization (RTN, GPTQ, AWQ) through the sequential engine, to an
// integer grid (dense fake-quantized output) or to llama.cpp block types (GGUF).
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>

#include "llmpress/calib/engine.h"
#include "llmpress/cli/common.h"
#include "llmpress/core/error.h"
#include "llmpress/data/calibration.h"
#include "llmpress/export/gguf_writer.h"
#include "llmpress/export/gptq_checkpoint_writer.h"
#include "llmpress/export/safetensors_writer.h"
#include "llmpress/model/transformer.h"
#include "llmpress/quant/awq.h"
#include "llmpress/quant/ggml_rtn.h"
#include "llmpress/quant/ggml_weight.h"
#include "llmpress/quant/gptq.h"
#include "llmpress/quant/gptq_ggml.h"
#include "llmpress/quant/rtn.h"
#include "llmpress/quant/type_mix.h"

namespace llmpress::cli {

namespace {

namespace fs = std::filesystem;

struct QuantizeCommand {
  ModelOptions model;
  std::string output;
  std::string method = "gptq";
  std::string format = "dense";
  std::string type = "Q4_K_M";             // --format gguf: llama-quantize mix
  std::vector<std::string> tensor_types;  // --format gguf: REGEX=TYPE overrides on GGUF names
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

// Per-linear GGUF types of a llama-quantize mix (with its fallbacks and the overrides), by Hugging
// Face linear name without ".weight"; the GGUF writer reports the notes when it writes the file.
std::map<std::string, TensorType> linear_types_for_mix(const ModelConfig& config, const std::string& mix,
                                                       const std::vector<std::string>& overrides) {
  std::vector<TensorShape> shapes;
  std::map<std::string, std::string> hf_of;
  for (const auto& [hf_name, shape] : expected_tensor_shapes(config)) {
    const std::string name = gguf_tensor_name(hf_name);
    if (name.empty()) continue;
    shapes.push_back({name, shape});
    hf_of[name] = hf_name;
  }
  std::map<std::string, TensorType> types;
  for (const TensorTypeChoice& c : choose_tensor_types(config, shapes, mix, overrides)) {
    const std::string& hf = hf_of[c.name];
    if (hf.rfind("model.layers.", 0) == 0 && hf.size() > 7 && hf.compare(hf.size() - 7, 7, ".weight") == 0 &&
        hf.find("_proj.") != std::string::npos)
      types[hf.substr(0, hf.size() - 7)] = c.type;
  }
  return types;
}

// rtn / gptq onto the output format's grid; awq and awq-gptq wrap them in AWQ's scale search.
std::unique_ptr<Compressor> make_compressor(const QuantizeCommand& command, const ModelConfig& config) {
  const bool gptq = command.method == "gptq" || command.method == "awq-gptq";
  const bool awq = command.method == "awq" || command.method == "awq-gptq";
  std::unique_ptr<Compressor> inner;
  FakeQuantizer fake_quantize;
  if (command.format == "gguf") {
    const auto types = linear_types_for_mix(config, command.type, command.tensor_types);
    if (gptq) inner = std::make_unique<GgmlGptqCompressor>(types, command.gptq);
    else inner = std::make_unique<GgmlRtnCompressor>(types, !command.calib_file.empty());
    fake_quantize = [types](const std::string& name, const at::Tensor& w) {
      return GgmlWeight::encode(w, types.at(name))->dense();
    };
  } else {
    if (gptq) inner = std::make_unique<GptqCompressor>(command.gptq);
    else inner = std::make_unique<RtnCompressor>(command.gptq.grid);
    const IntGridSpec grid = command.gptq.grid;
    fake_quantize = [grid](const std::string&, const at::Tensor& w) { return rtn_quantize(w, grid)->dense(); };
  }
  if (!awq) return inner;
  return std::make_unique<AwqCompressor>(std::move(inner), fake_quantize);
}

// llama.cpp's imatrix entry for output.weight: per-column sum of squares of the head's input.
std::vector<float> head_importance(const Transformer& shell, const at::Tensor& final_hidden) {
  const at::Tensor x = final_hidden.to(at::kFloat).reshape({-1, final_hidden.size(-1)});
  const at::Tensor normed = x * at::rsqrt(x.pow(2).mean(-1, true) + shell.config.rms_norm_eps) * shell.norm.to(x.device());
  const at::Tensor sums = normed.to(at::kDouble).pow(2).sum(0).to(at::kCPU, at::kFloat).contiguous();
  return std::vector<float>(sums.data_ptr<float>(), sums.data_ptr<float>() + sums.numel());
}

void run(QuantizeCommand command) {
  if (command.format != "dense" && command.format != "gguf" && command.format != "gptq")
    throw Error("--format: unknown format '" + command.format + "' (dense, gguf, gptq)");
  if (command.method != "rtn" && command.method != "gptq" && command.method != "awq" && command.method != "awq-gptq")
    throw Error("--method: unknown method '" + command.method + "' (rtn, gptq, awq, awq-gptq)");
  if (command.method != "rtn" && command.calib_file.empty())
    throw Error("--method " + command.method + " needs calibration text: --calib FILE (plain text or .jsonl)");
  if (command.format == "gguf") quant_mix(command.type);  // unknown mix: fail before any work
  else if (!command.tensor_types.empty()) throw Error("--tensor-type needs --format gguf");
  command.gptq.grid.check();

  const Checkpoint checkpoint = open_model(command.model);
  const at::Device device = parse_device(command.model.device);
  std::unique_ptr<Compressor> compressor = make_compressor(command, checkpoint.config);

  at::Tensor tokens = at::zeros({0, 1}, at::kLong);  // RTN without calibration: no samples to run
  // Plain RTN onto an integer grid reads no statistics: calibration only serves --verbose there.
  const bool needs_calibration = command.method != "rtn" || command.format == "gguf" || command.verbose;
  if (!command.calib_file.empty() && !needs_calibration)
    std::fprintf(stderr, "note: rtn onto an integer grid uses no calibration data; --calib only matters with --verbose\n");
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
  GgufModelOptions gguf;
  std::map<std::string, std::shared_ptr<const QuantizedWeight>> int_linears;  // --format gptq
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
      const auto* blocks = dynamic_cast<const GgmlWeight*>(linear.weight.get());
      const auto grid = std::dynamic_pointer_cast<const QuantizedWeight>(linear.weight);
      if (command.format == "gptq" && grid) {
        int_linears[prefix + name + ".weight"] = grid;
        tensors.push_back({prefix + name + ".weight",
                           at::empty({grid->out_features(), grid->in_features()}, at::device(at::kMeta))});
      } else if (blocks) {
        // Only the encoded bytes are kept; the tensor stands for the shape.
        gguf.encoded[gguf_tensor_name(prefix + name + ".weight")] = {blocks->type(), blocks->bytes()};
        tensors.push_back({prefix + name + ".weight",
                           at::empty({blocks->out_features(), blocks->in_features()}, at::device(at::kMeta))});
      } else {
        tensors.push_back({prefix + name + ".weight", linear.weight->dense().to(at::kCPU, at::kFloat)});
      }
      if (linear.bias.defined()) tensors.push_back({prefix + name + ".bias", linear.bias.to(at::kCPU)});
      quantized_bits += linear.weight->storage_bits();
      quantized_params += linear.weight->in_features() * linear.weight->out_features();
    }
  };
  const EngineResult result = compress_sequential(checkpoint, shell, tokens, *compressor, options);

  std::string written;
  double file_bytes = 0;
  if (command.format == "gguf") {
    if (!command.calib_file.empty())
      gguf.importance["output.weight"] = head_importance(shell, result.final_hidden);
    const Vocab vocab = load_tokenizer(checkpoint)->to_vocab();
    const auto choices = write_gguf_model_mix(command.output, checkpoint.config, tensors, vocab, command.type,
                                              command.tensor_types, gguf);
    for (const GgufTensorChoice& choice : choices)
      if (!choice.note.empty()) std::fprintf(stderr, "note: %s: %s\n", choice.gguf_name.c_str(), choice.note.c_str());
    file_bytes = double(fs::file_size(command.output));
    written = "GGUF " + command.type;
  } else {
    TokenizerFiles tokenizer_files;
    collect_tokenizer_files(checkpoint, tokenizer_files);
    if (command.format == "gptq") {
      const nlohmann::json meta = {{"damp_percent", command.gptq.percdamp},
                                   {"static_groups", command.gptq.static_groups},
                                   {"true_sequential", true},
                                   {"quantizer", "llmpress " + command.method}};
      write_gptq_checkpoint(command.output, checkpoint.config, tensors, int_linears, tokenizer_files.files, meta);
      written = "GPTQ checkpoint";
    } else {
      write_hf_checkpoint(command.output, checkpoint.config, tensors, tokenizer_files.files);
      written = "dense fake-quantized safetensors";
    }
  }

  const double total_params = double(checkpoint.config.parameter_count());
  const double before = total_params * 16;
  if (command.verbose) {
    std::printf("%-40s %8s %12s %10s\n", "layer", "kind", "||dWX||^2", "relative");
    for (const LinearReport& r : result.linears)
      std::printf("%-40s %8s %12.5g %10.3e\n", r.name.c_str(), r.kind.c_str(), r.output_error, r.relative_error);
  }
  std::printf("method: %s\n", compressor->describe().c_str());
  std::printf("quantized linear weights: %lld parameters, %.3f bits/weight\n", (long long)quantized_params,
              quantized_params > 0 ? double(quantized_bits) / double(quantized_params) : 0.0);
  if (file_bytes > 0) {
    std::printf("model size: %.2f MiB at 16 bits -> %.2f MiB file (%.2f bits/weight overall)\n", mib(before),
                file_bytes / 1048576.0, file_bytes * 8 / total_params);
  } else {
    // As a packed format would store it: linears at their exact storage size, the rest at 16 bits.
    const double after = double(quantized_bits) + (total_params - double(quantized_params)) * 16;
    std::printf("model size: %.2f MiB at 16 bits -> %.2f MiB packed (%.2f bits/weight overall)\n", mib(before),
                mib(after), after / total_params);
  }
  std::printf("time: %.1f s (%lld layers resumed)\n", result.seconds, (long long)result.resumed_layers);
  std::printf("wrote %s (%s)\n", command.output.c_str(), written.c_str());
}

}  // namespace

void register_quantize(CLI::App& app) {
  auto command = std::make_shared<QuantizeCommand>();
  CLI::App* sub = app.add_subcommand("quantize", "post-training quantization (RTN, GPTQ, AWQ) to an integer grid or llama.cpp block types");
  add_model_options(*sub, command->model);
  sub->add_option("-o,--output", command->output, "output: a folder (--format dense, gptq) or a .gguf file")->required();
  sub->add_option("--method", command->method,
                  "rtn (round to nearest), gptq, awq (activation-aware scales, then rtn) or awq-gptq (AWQ scales, "
                  "then gptq); all but rtn need --calib")
      ->capture_default_str();
  sub->add_option("--format", command->format,
                  "dense: Hugging Face folder of dequantized weights (--bits/--group grid); gptq: Hugging Face "
                  "GPTQ checkpoint (qweight/qzeros/scales/g_idx; 2/3/4/8 bits); gguf: llama.cpp file of ggml "
                  "blocks (--type mix)")
      ->capture_default_str();
  sub->add_option("--type", command->type,
                  "gguf: llama-quantize mix (Q2_K, Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M, Q6_K, Q4_0, Q4_1, Q5_0, Q5_1, "
                  "Q8_0); rtn with --calib weights blocks by activations (imatrix)")
      ->capture_default_str();
  sub->add_option("--tensor-type", command->tensor_types, "gguf: REGEX=TYPE per-tensor override on GGUF names (repeatable)");
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

// llmpress perplexity: how well a model predicts a text file.
#include <nlohmann/json.hpp>

#include <cstdio>

#include "llmpress/cli/common.h"
#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/core/runtime.h"
#include "llmpress/data/text.h"
#include "llmpress/eval/perplexity.h"
#include "llmpress/model/layer_source.h"
#include "llmpress/model/transformer.h"
#include "llmpress/train/lora.h"

namespace llmpress::cli {

namespace {

struct PerplexityCommand {
  ModelOptions model;
  std::string text_file;
  std::string lora;
  ActivationQuant activation_quant;
  PerplexityOptions options;
  bool json = false;
  bool no_progress = false;
  bool stream = false;
};

PerplexityResult loaded_perplexity(const PerplexityCommand& command, const Checkpoint& checkpoint,
                                   const std::vector<int32_t>& tokens, const PerplexityOptions& options) {
  Transformer model = Transformer::load(checkpoint, parse_device(command.model.device));
  model.set_activation_quant(command.activation_quant);
  if (command.activation_quant.enabled())
    std::fprintf(stderr, "simulated: activations %s, KV cache %s (per-token absmax round-to-nearest)\n",
                 command.activation_quant.act_bits ? strprintf("%d-bit", command.activation_quant.act_bits).c_str() : "float",
                 command.activation_quant.kv_bits ? strprintf("%d-bit", command.activation_quant.kv_bits).c_str() : "float");
  if (!command.lora.empty()) {
    const LoraAdapter adapter = read_lora_adapter(command.lora, checkpoint.config);
    const int64_t applied = apply_lora_adapter(model, adapter, command.lora);
    std::fprintf(stderr, "%s: LoRA adapter on %lld linears, rank %lld, scale %g\n", command.lora.c_str(),
                 (long long)applied, (long long)adapter.rank(), adapter.alpha / double(adapter.rank()));
  }

  return perplexity(model, tokens, options);
}

void print_result(const PerplexityCommand& command, const PerplexityOptions& options, const PerplexityResult& result,
                  bool streamed) {
  if (command.json) {
    nlohmann::json out = {{"model", command.model.model},
                          {"text", command.text_file},
                          {"convention", options.llamacpp ? "llamacpp" : "gptq"},
                          {"context", options.context},
                          {"act_bits", command.activation_quant.act_bits},
                          {"kv_bits", command.activation_quant.kv_bits},
                          {"lora", command.lora},
                          {"streamed", streamed},
                          {"chunks", result.chunks},
                          {"scored_tokens", result.scored_tokens},
                          {"perplexity", result.perplexity},
                          {"uncertainty", result.uncertainty},
                          {"mean_nll", result.mean_nll},
                          {"seconds", result.seconds},
                          {"tokens_per_second", result.tokens_per_second}};
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("chunks = %lld, scored tokens = %lld, %.1f tokens/s\n", (long long)result.chunks,
                (long long)result.scored_tokens, result.tokens_per_second);
    std::printf("ppl = %.4f +/- %.5f\n", result.perplexity, result.uncertainty);
  }
}

void run(const PerplexityCommand& command) {
  const Checkpoint checkpoint = open_model(command.model);
  check_perplexity_options(checkpoint.config, command.options);
  if (command.options.context > checkpoint.config.max_position_embeddings)
    std::fprintf(stderr, "warning: -c %lld is longer than the model's training context (%lld)\n",
                 (long long)command.options.context, (long long)checkpoint.config.max_position_embeddings);
  const auto tokenizer = load_tokenizer(checkpoint);
  const std::string text = read_text_file(command.text_file);
  const std::vector<int32_t> tokens = tokenizer->encode(text);
  PerplexityOptions options = command.options;
  options.bos_id = tokenizer->bos_id();
  options.progress = !command.no_progress;
  const bool changes_model = !command.lora.empty() || command.activation_quant.enabled();
  if (command.stream && changes_model) throw Error("--stream runs the model as stored: it cannot apply --lora, --act-bits or --kv-bits");
  bool stream = command.stream;
  const uint64_t needed = resident_model_bytes(checkpoint), available = available_memory_bytes();
  if (!stream && !changes_model && available > 0 && double(needed) > 0.9 * double(available)) {
    std::fprintf(stderr, "the model needs %.2f GiB loaded and %.2f GiB are available: running it one layer at a time "
                 "(--stream)\n", double(needed) / (1 << 30), double(available) / (1 << 30));
    stream = true;
  }
  std::fprintf(stderr, "%s: %zu tokens, windows of %lld, %s convention\n", command.text_file.c_str(), tokens.size(),
               (long long)options.context, options.llamacpp ? "llama.cpp" : "GPTQ");
  const PerplexityResult result = stream ? perplexity_streamed(CheckpointSource(checkpoint), tokens, options,
                                                               parse_device(command.model.device))
                                         : loaded_perplexity(command, checkpoint, tokens, options);
  print_result(command, options, result, stream);
}

}  // namespace

void register_perplexity(CLI::App& app) {
  auto command = std::make_shared<PerplexityCommand>();
  CLI::App* sub = app.add_subcommand("perplexity", "perplexity of a model on a text file");
  add_model_options(*sub, command->model);
  sub->add_option("-f,--file", command->text_file, "text file to score")->required();
  sub->add_option("--lora", command->lora,
                  "apply a LoRA adapter: a llama.cpp adapter GGUF or a PEFT folder (as llama-perplexity --lora, scale 1)");
  sub->add_option("--act-bits", command->activation_quant.act_bits,
                  "simulate low-bit activations: every decoder linear's input rounded per token to these bits (e.g. 8)");
  sub->add_option("--kv-bits", command->activation_quant.kv_bits,
                  "simulate a low-bit KV cache: keys and values rounded per token and head (e.g. 4 or 8)");
  sub->add_option("-c,--ctx-size", command->options.context, "tokens per window")->capture_default_str();
  sub->add_option("--chunks", command->options.max_chunks, "score only the first K windows (default: all)");
  sub->add_flag("--llamacpp", command->options.llamacpp,
                "llama.cpp's convention (BOS at each window start, second half of each window scored) "
                "instead of the GPTQ paper's (every token of non-overlapping windows)");
  sub->add_option("-b,--batch-size", command->options.batch_tokens, "tokens per forward pass (whole windows)")
      ->capture_default_str();
  sub->add_flag("--stream", command->stream,
                "run the model one decoder layer at a time over all windows (for models larger than memory; "
                "automatic when the model does not fit); holds every window's hidden states instead");
  sub->add_flag("--json", command->json, "print the result as JSON");
  sub->add_flag("--no-progress", command->no_progress, "no progress line on stderr");
  sub->callback([command] { run(*command); });
}

}  // namespace llmpress::cli

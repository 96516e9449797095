// llmpress generate: continue a prompt, streaming tokens to stdout.
#include <chrono>
#include <cstdio>

#include "llmpress/cli/common.h"
#include "llmpress/core/error.h"
#include "llmpress/eval/generate.h"
#include "llmpress/model/transformer.h"

namespace llmpress::cli {

namespace {

struct GenerateCommand {
  ModelOptions model;
  std::string prompt;
  GenerateOptions options;
  bool no_bos = false;
};

void run(const GenerateCommand& command) {
  const Checkpoint checkpoint = open_model(command.model);
  const auto tokenizer = load_tokenizer(checkpoint);
  const Transformer model = Transformer::load(checkpoint, parse_device(command.model.device));

  std::vector<int32_t> prompt;
  if (!command.no_bos) prompt.push_back(tokenizer->bos_id());
  for (int32_t id : tokenizer->encode(command.prompt)) prompt.push_back(id);
  if (prompt.empty()) throw Error("the prompt is empty and --no-bos was given: nothing to start from");

  GenerateOptions options = command.options;
  options.stop_ids = {tokenizer->eos_id(), tokenizer->bos_id()};
  std::printf("%s", command.prompt.c_str());
  std::fflush(stdout);
  int32_t previous = prompt.back();
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> generated = generate(model, prompt, options, [&](int32_t id) {
    std::printf("%s", tokenizer->token_text(id, previous).c_str());
    std::fflush(stdout);
    previous = id;
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("\n");
  std::fprintf(stderr, "%zu tokens in %.2fs (%.1f tokens/s, prompt %zu tokens)\n", generated.size(), seconds,
               seconds > 0 ? double(generated.size()) / seconds : 0.0, prompt.size());
}

}  // namespace

void register_generate(CLI::App& app) {
  auto command = std::make_shared<GenerateCommand>();
  CLI::App* sub = app.add_subcommand("generate", "generate text from a prompt (streamed to stdout)");
  add_model_options(*sub, command->model);
  sub->add_option("-p,--prompt", command->prompt, "prompt text (default: empty, start from BOS)");
  sub->add_option("-n,--n-predict", command->options.max_new_tokens, "tokens to generate")->capture_default_str();
  sub->add_option("--temp", command->options.temperature, "sampling temperature; 0 = greedy")->capture_default_str();
  sub->add_option("--top-p", command->options.top_p, "nucleus sampling threshold")->capture_default_str();
  sub->add_option("--seed", command->options.seed, "random seed")->capture_default_str();
  sub->add_flag("--no-bos", command->no_bos, "do not start the prompt with BOS");
  sub->callback([command] { run(*command); });
}

}  // namespace llmpress::cli

// llmpress finetune: quantization-aware fine-tuning of an already quantized model (a GGUF's blocks or a
// GPTQ checkpoint, kept quantized) on task or domain data, written back in the same format.
//   peqa     only the quantization scales train (cross-entropy on -f); every code stays as it was
//   lora     low-rank adapters on the frozen quantized model (QLoRA-style); the output is the adapter (a PEFT
//            folder or a llama.cpp adapter GGUF), or with --merge the model, re-quantized onto its own format
//   qa-lora  group-pooled adapters that --merge adds to Q4_1 / Q5_1 block mins, keeping every code
#include "llmpress/cli/job.h"
#include "llmpress/core/error.h"

namespace llmpress::cli {

namespace {

struct FinetuneCommand {
  JobFlags job;
  std::string method = "peqa";
  std::string data, train_seqlen, format;
  MethodFlags training;
  CLI::App* app = nullptr;
};

Recipe build_recipe(const FinetuneCommand& c) {
  if (c.method != "peqa" && c.method != "lora" && c.method != "qa-lora")
    throw Error("--method must be peqa, lora or qa-lora, not '" + c.method + "'");
  Recipe recipe = recipe_from_flags(c.job);
  recipe.output.format = c.format;
  StageSpec stage;
  stage.method = c.method;
  stage.options = c.training.given();
  stage.options["data"] = c.data;
  if (!c.train_seqlen.empty()) stage.options["seqlen"] = parse_flag_number("--train-seqlen", c.train_seqlen, true);
  if (c.app->get_option("--seed")->count()) stage.options["seed"] = c.job.calib.seed;
  recipe.stages = {stage};
  return recipe;
}

}  // namespace

void register_finetune(CLI::App& app) {
  auto c = std::make_shared<FinetuneCommand>();
  CLI::App* sub = app.add_subcommand(
      "finetune", "quantization-aware fine-tuning of a quantized model: PEQA (its scales), LoRA or QA-LoRA adapters");
  c->app = sub;
  add_job_flags(*sub, c->job,
                "output: NAME.gguf, or a folder (--format gptq keeps a GPTQ checkpoint); lora / qa-lora without "
                "--merge: the adapter, NAME.gguf for llama.cpp (--lora) or a PEFT folder");
  sub->get_option("--model")->description("a quantized model: GGUF (Q4_K_M, Q2_K, ... blocks) or a GPTQ checkpoint");
  sub->add_option("--method", c->method, "peqa (scales only), lora or qa-lora (adapters)")->capture_default_str();
  sub->add_option("--format", c->format, "output format: gguf, hf or gptq (default: from the output name; a folder is hf)");
  sub->add_option("-f,--file", c->data, "training text or .jsonl records")->required();
  sub->add_option("--train-seqlen", c->train_seqlen, "tokens per training row (default 256)");
  c->training.add(*sub, "finetune", {"data", "seqlen", "seed", "eval"});
  sub->footer(
      "examples:\n"
      "  llmpress finetune -m model-q4km.gguf -f domain.txt -o tuned-q4km.gguf --steps 200 --lr 1e-3 --eval held-out.txt\n"
      "  llmpress finetune -m model-q4km.gguf --method lora --rank 16 -f domain.txt -o adapter.gguf --lr 2e-4\n"
      "      (llama-perplexity -m model-q4km.gguf --lora adapter.gguf ...; -o DIR writes a PEFT adapter folder)\n"
      "  llmpress finetune -m model-q4_1.gguf --method qa-lora --merge -f domain.txt -o tuned-q4_1.gguf");
  sub->callback([c] { run_job(build_recipe(*c), c->job); });
}

}  // namespace llmpress::cli

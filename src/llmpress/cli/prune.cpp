// llmpress prune: unstructured and N:M pruning (magnitude, Wanda, SparseGPT) and structured pruning
// (attention heads, MLP channels, whole layers) as a one-stage pipeline. Output: a Hugging Face
// folder or GGUF (zeros in place; structured pruning writes a genuinely smaller model).
#include "llmpress/cli/job.h"
#include "llmpress/core/error.h"

namespace llmpress::cli {

namespace {

struct PruneCommand {
  JobFlags job;
  std::string method;  // default: sparsegpt with calibration text, magnitude without
  std::string skip;
  std::string format;
  std::string type;
  MethodFlags options;
};

Recipe build_recipe(const PruneCommand& command) {
  Recipe recipe = recipe_from_flags(command.job);
  StageSpec stage;
  stage.method = !command.method.empty() ? command.method : command.job.calib_file.empty() ? "magnitude" : "sparsegpt";
  stage.options = command.options.given();
  if (!command.skip.empty()) stage.ignore.push_back(command.skip);
  recipe.output.format = command.format;
  recipe.output.type = command.type;
  recipe.stages.push_back(stage);
  return recipe;
}

}  // namespace

void register_prune(CLI::App& app) {
  auto command = std::make_shared<PruneCommand>();
  CLI::App* sub = app.add_subcommand("prune", "remove weights: unstructured, N:M, attention heads, MLP channels, layers");
  add_job_flags(*sub, command->job, "output: a folder (Hugging Face) or NAME.gguf");
  sub->add_option("--method", command->method,
                  "magnitude, wanda, sparsegpt (unstructured or --pattern N:M), heads, channels, layers (structured); "
                  "default: sparsegpt with --calib, magnitude without");
  sub->add_option("--skip", command->skip, "REGEX of linear layers left dense (e.g. 'mlp\\.down_proj')");
  sub->add_option("--format", command->format,
                  "hf (dense, zeros in place), sparse (compressed-tensors: sparse-24-bitmask when all is 2:4, else "
                  "sparse-bitmask; or name one), gguf; default: from the output name (.gguf) and --type, else hf");
  sub->add_option("--type", command->type,
                  "element type: F32 (default), F16, BF16; or a GGUF type / mix (Q8_0, Q4_K_M, ...) for GGUF output");
  command->options.add(*sub, "prune");
  sub->callback([command] { run_job(build_recipe(*command), command->job); });
}

}  // namespace llmpress::cli

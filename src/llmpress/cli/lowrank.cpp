// llmpress lowrank: low-rank factorization of the linear layers (SVD, ASVD, SVD-LLM, Tucker, CP) as
// a one-stage pipeline, written as a factorized or dense Hugging Face folder, or a dense GGUF.
#include "llmpress/cli/job.h"
#include "llmpress/core/error.h"

namespace llmpress::cli {

namespace {

struct LowRankCommand {
  JobFlags job;
  std::string method;  // default: svd-llm with calibration text, svd without
  std::string format;
  std::string type;
  MethodFlags options;
};

Recipe build_recipe(const LowRankCommand& command) {
  if (command.format == "factorized-gguf" || command.format == "gguf-factorized")
    throw Error("--format " + command.format + ": llama.cpp cannot run a GGUF with factorized (two-factor) linear "
                "layers, so llmpress does not write one; use -o NAME.gguf for a dense GGUF (factors multiplied back) "
                "or --format factorized for a factorized safetensors folder");
  Recipe recipe = recipe_from_flags(command.job);
  StageSpec stage;
  stage.method = !command.method.empty() ? command.method : command.job.calib_file.empty() ? "svd" : "svd-llm";
  stage.options = command.options.given();
  recipe.output.format = command.format;
  recipe.output.type = command.type;
  recipe.stages.push_back(stage);
  return recipe;
}

}  // namespace

void register_lowrank(CLI::App& app) {
  auto command = std::make_shared<LowRankCommand>();
  CLI::App* sub = app.add_subcommand("lowrank", "low-rank factorization of the linear layers (SVD, ASVD, SVD-LLM, Tucker, CP)");
  add_job_flags(*sub, command->job, "output: a folder (Hugging Face) or NAME.gguf (dense)");
  sub->add_option("--method", command->method,
                  "svd, asvd, svd-llm, tucker or cp (attention projections as heads x head_dim x hidden tensors; "
                  "MLP left dense); default: svd-llm with --calib, svd without");
  sub->add_option("--format", command->format,
                  "factorized (safetensors with NAME.weight_u [out,r] and NAME.weight_v [r,in]; default for a folder), "
                  "dense (safetensors, factors multiplied back) or gguf (dense; llama.cpp runs no factorized layers)");
  sub->add_option("--type", command->type, "element type of the output: F32 (default), F16, BF16");
  command->options.add(*sub, "lowrank");
  sub->callback([command] { run_job(build_recipe(*command), command->job); });
}

}  // namespace llmpress::cli

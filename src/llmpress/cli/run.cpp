// llmpress run RECIPE.yaml: a compression job as a recipe (model, calibration, stages, output).
#include "llmpress/cli/job.h"
#include "llmpress/core/error.h"
#include "llmpress/pipeline/method.h"

namespace llmpress::cli {

namespace {

struct RunCommand {
  std::string recipe;
  JobFlags job;
  CLI::App* app = nullptr;
};

std::string methods_help() {
  std::string text = "stage methods (and their options; `--help` of quantize / prune / lowrank / train / distill "
                     "explains them: a flag --act-order is the option act_order):";
  for (const MethodSpec* m : registered_methods()) {
    text += "\n  " + m->name + " (" + m->family + "): " + m->summary;
    std::string options;
    for (const OptionSpec& o : m->options) options += (options.empty() ? "" : ", ") + o.name;
    if (!options.empty()) text += "\n      " + options;
  }
  return text;
}

void run(const RunCommand& command) {
  Recipe recipe = load_recipe(command.recipe);
  // Command-line values replace the recipe's, so one recipe serves several models or outputs.
  if (!command.job.model.model.empty()) recipe.model = command.job.model.model;
  if (!command.job.model.tokenizer.empty()) recipe.tokenizer = command.job.model.tokenizer;
  if (!command.job.output.empty()) {
    recipe.output.path = command.job.output;
    recipe.output.where = {};
  }
  if (!command.job.calib_file.empty()) recipe.calibration.file = command.job.calib_file;
  if (command.app->get_option("--nsamples")->count()) recipe.calibration.nsamples = command.job.calib.nsamples;
  if (command.app->get_option("--seqlen")->count()) recipe.calibration.seqlen = command.job.calib.seqlen;
  if (command.app->get_option("--seed")->count()) recipe.calibration.seed = command.job.calib.seed;
  run_job(recipe, command.job);
}

}  // namespace

void register_run(CLI::App& app) {
  auto command = std::make_shared<RunCommand>();
  CLI::App* sub = app.add_subcommand("run", "run a compression recipe (YAML: model, calibration, stages, output)");
  command->app = sub;
  sub->footer(methods_help());
  sub->add_option("recipe", command->recipe, "recipe file (YAML); --save-recipe on quantize/prune/lowrank writes one")
      ->required();
  add_job_flags(*sub, command->job, "");
  sub->get_option("--model")->required(false)->description("model (replaces the recipe's model)");
  sub->add_option("-o,--output", command->job.output, "output (replaces the recipe's output path)");
  sub->callback([command] { run(*command); });
}

}  // namespace llmpress::cli

#pragma once
// What quantize, prune, lowrank and run share: the calibration and job flags, the method
// options of a family as flags (generated from the method registry, so --help lists exactly what
// the methods take), and running a recipe with its report.
#include <CLI/CLI.hpp>

#include <map>
#include <memory>
#include <string>

#include "llmpress/cli/common.h"
#include "llmpress/cli/launch.h"
#include "llmpress/pipeline/method.h"
#include "llmpress/pipeline/pipeline.h"
#include "llmpress/pipeline/recipe.h"

namespace llmpress::cli {

struct JobFlags {
  ModelOptions model;
  std::string output;
  std::string calib_file;
  CalibrationSpec calib;
  int64_t batch_samples = 8;
  std::string work_dir;
  bool resume = false;
  bool verbose = false;
  bool no_progress = false;
  std::string save_recipe;
  std::string eval_file;  // perplexity of the input and the output, side by side
  int64_t eval_context = 256;
  int64_t eval_chunks = 16;
  DistributedFlags distributed;
};

// -m/--tokenizer/-t/--device, -o (when `output_help` is not empty), --calib/--nsamples/--seqlen/
// --seed/--batch, --work-dir/--resume/--verbose/--no-progress/--save-recipe, --nproc and the
// multi-machine data-parallel flags.
void add_job_flags(CLI::App& command, JobFlags& flags, const std::string& output_help);

// Flags for the options of every method of `family`, by option name (bits -> --bits). Only the
// flags given on the command line become stage options; the rest keep the method's defaults.
class MethodFlags {
 public:
  // `skip`: options the command declares itself (e.g. type, which also sets the output).
  void add(CLI::App& command, const std::string& family, const std::set<std::string>& skip = {});
  // The given flags as stage options, typed as the registry declares them.
  nlohmann::json given() const;

 private:
  struct Flag {
    OptionType type;
    CLI::Option* option = nullptr;
    std::string text;
    std::vector<std::string> list;
    bool flag = false;
  };
  std::map<std::string, std::unique_ptr<Flag>> flags_;
};

// The number a flag's text holds, the whole text (an integer or any number); Error naming the flag otherwise.
nlohmann::json parse_flag_number(const std::string& flag, const std::string& text, bool integer);

// The recipe's model and calibration from the flags.
Recipe recipe_from_flags(const JobFlags& flags);

// Checks the recipe against the model, writes it with --save-recipe, runs it (data-parallel with
// --nproc / --world-size) and prints the report.
void run_job(const Recipe& recipe, const JobFlags& flags);

}  // namespace llmpress::cli

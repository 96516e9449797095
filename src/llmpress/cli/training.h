#pragma once
// What train and distill share: the training flags (steps, batch, schedule, optimizer, evaluation,
// checkpoints) and writing the trained model like every other command's output.
#include <CLI/CLI.hpp>

#include <string>

#include "llmpress/cli/common.h"
#include "llmpress/cli/launch.h"
#include "llmpress/train/trainer.h"

namespace llmpress::cli {

struct TrainFlags {
  ModelOptions model;
  std::string data;     // -f: plain text or .jsonl records
  std::string output;   // -o: the output name decides the format (.gguf -> GGUF)
  std::string type;     // GGUF type or mix (F16, Q8_0, Q4_K_M) / Hugging Face dtype
  int64_t seqlen = 256;
  std::string eval_file;
  bool no_progress = false;
  TrainOptions train;
  DistributedFlags distributed;
  std::unique_ptr<Communicator> group;  // data-parallel: this rank's (null: one process)
  bool writes() const { return !group || group->writes(); }
};

void add_train_flags(CLI::App& command, TrainFlags& flags);

// Sets threads and checks the flags that need no model (before any work), then starts or joins the
// data-parallel group (--nproc: this process only launches the ranks and exits with their status).
void prepare_training(TrainFlags& flags);

// A new model of CONFIG.json's architecture, randomly initialised (seeded); the tokenizer is `tokenizer`
// or the one beside the config.
std::pair<Checkpoint, Transformer> new_model(const std::string& config_path, const std::string& tokenizer, uint64_t seed);

// The held-out tokens of --eval (empty without it).
std::vector<int32_t> eval_tokens(const TrainFlags& flags, const Tokenizer& tokenizer);

// Writes `model` (tokenizer and file names from `origin`) to flags.output, prints what was written and
// removes the training state file (the job is complete). Data-parallel: rank 0 only.
void write_trained_model(const Transformer& model, const Checkpoint& origin, const TrainFlags& flags,
                         const TrainResult& result);

}  // namespace llmpress::cli

#pragma once
// Options every model-reading subcommand shares, and the steps they all take.
#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

#include "llmpress/export/tokenizer_files.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/tokenizer/tokenizer.h"

namespace llmpress::cli {

struct ModelOptions {
  std::string model;
  std::string tokenizer;
  int threads = 0;  // 0: libtorch's default (all cores)
  std::string device = "cpu";
};

void add_model_options(CLI::App& command, ModelOptions& options);
// Sets threads, opens the checkpoint (open_checkpoint checks it), returns it.
Checkpoint open_model(const ModelOptions& options);
at::Device parse_device(const std::string& name);

// Every subcommand registers itself here; main.cpp only dispatches.
void register_perplexity(CLI::App& app);
void register_generate(CLI::App& app);
void register_info(CLI::App& app);
void register_quantize(CLI::App& app);
void register_convert(CLI::App& app);
void register_lowrank(CLI::App& app);
void register_prune(CLI::App& app);
void register_run(CLI::App& app);
void register_train(CLI::App& app);
void register_distill(CLI::App& app);
void register_qat(CLI::App& app);
void register_finetune(CLI::App& app);
void register_eval(CLI::App& app);
void register_gen_tasks(CLI::App& app);
void register_gen_data(CLI::App& app);

}  // namespace llmpress::cli

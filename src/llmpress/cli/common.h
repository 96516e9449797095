#pragma once
// Options every model-reading subcommand shares, and the steps they all take.
#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

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

// Tokenizer files to ship with a Hugging Face output folder, under the names the Hugging Face
// loader looks for. A llama2.c tokenizer.bin is replaced by the SentencePiece .model beside it.
struct TokenizerFiles {
  std::vector<std::string> files;
  std::string staging;  // temporary folder for renamed copies, removed by the destructor
  TokenizerFiles() = default;
  TokenizerFiles(const TokenizerFiles&) = delete;
  TokenizerFiles& operator=(const TokenizerFiles&) = delete;
  ~TokenizerFiles();
  void add_as(const std::string& source, const std::string& name);
};
void collect_tokenizer_files(const Checkpoint& checkpoint, TokenizerFiles& out);

// Every subcommand registers itself here; main.cpp only dispatches.
void register_perplexity(CLI::App& app);
void register_generate(CLI::App& app);
void register_info(CLI::App& app);
void register_quantize(CLI::App& app);
void register_convert(CLI::App& app);
void register_lowrank(CLI::App& app);
void register_prune(CLI::App& app);

}  // namespace llmpress::cli

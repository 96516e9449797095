#pragma once
// Tokenizer files to ship with a Hugging Face output folder, under the names the Hugging Face
// loader looks for. (A copy of the helper in quantize.cpp, shared here so other commands that write
// checkpoints can use it; quantize.cpp can switch to it.)
#include <string>
#include <vector>

#include "llmpress/io/checkpoint.h"

namespace llmpress::cli {

struct TokenizerFiles {
  std::vector<std::string> files;
  std::string staging;  // temporary folder for renamed copies, removed by the destructor
  TokenizerFiles() = default;
  TokenizerFiles(const TokenizerFiles&) = delete;
  TokenizerFiles& operator=(const TokenizerFiles&) = delete;
  ~TokenizerFiles();
  void add_as(const std::string& source, const std::string& name);
};

// The checkpoint's tokenizer (a llama2.c tokenizer.bin is replaced by the SentencePiece .model of
// the same name beside it) and, for Hugging Face inputs, its tokenizer_config.json,
// special_tokens_map.json and generation_config.json. Warns on stderr when there is none.
void collect_tokenizer_files(const Checkpoint& checkpoint, TokenizerFiles& out);

}  // namespace llmpress::cli

#pragma once
// Tokenizer files to ship with a Hugging Face output folder, under the names the Hugging Face
// loader looks for. A llama2.c tokenizer.bin is replaced by the SentencePiece .model beside it.
#include <string>
#include <vector>

namespace llmpress {

class Checkpoint;

struct TokenizerFiles {
  std::vector<std::string> files;
  std::string staging;  // temporary folder for renamed copies, removed by the destructor
  TokenizerFiles() = default;
  TokenizerFiles(const TokenizerFiles&) = delete;
  TokenizerFiles& operator=(const TokenizerFiles&) = delete;
  ~TokenizerFiles();
  void add_as(const std::string& source, const std::string& name);
};

// Warns (log) and adds nothing when the checkpoint has no usable tokenizer file.
void collect_tokenizer_files(const Checkpoint& checkpoint, TokenizerFiles& out);

}  // namespace llmpress

#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace llmpress {

// A tokenizer vocabulary as GGUF stores it (tokenizer.ggml.*). GGUF readers fill it and
// GGUF writers emit it; tokenizers can be built from it.
struct Vocab {
  std::string model;  // "llama" (SentencePiece-style, merges by score) or "gpt2" (byte-level BPE)
  std::string pre;    // BPE pre-tokenizer: "default", "gpt-2", "llama-bpe", "qwen2", ...
  std::vector<std::string> tokens;
  std::vector<float> scores;     // may be empty for gpt2
  std::vector<int32_t> types;    // 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
  std::vector<std::string> merges;  // gpt2 only: "left right", rank = index
  int64_t bos_id = -1;
  int64_t eos_id = -1;
  int64_t unk_id = -1;
  int64_t pad_id = -1;
  bool add_bos = true;
  bool add_eos = false;
  bool add_space_prefix = true;
};

}  // namespace llmpress

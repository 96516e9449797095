#pragma once
// Hugging Face tokenizer.json (byte-level BPE form) read into GGUF vocabulary form plus the
// settings the BPE tokenizer needs (formats.md 7.2).
#include <cstdint>
#include <string>

#include "llmpress/io/vocab.h"
#include "llmpress/tokenizer/bpe_tokenizer.h"

namespace llmpress {

struct TokenizerJson {
  Vocab vocab;  // model "gpt2", pre chosen from the split regex, added tokens typed control/user-defined
  BpeSettings settings;
};

// Reads `path`; BOS/EOS and add_bos come from tokenizer_config.json beside it when present, else
// from the TemplateProcessing post-processor. The vocabulary is padded with "[PAD<i>]" (unused)
// tokens up to `vocab_size` (0: no padding). Throws one Error naming the file for malformed
// JSON, a missing or non-BPE model, a non-byte-level tokenizer, or unsupported options.
TokenizerJson read_tokenizer_json(const std::string& path, int64_t vocab_size);

}  // namespace llmpress

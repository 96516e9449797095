#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "llmpress/io/vocab.h"

namespace llmpress {

class Checkpoint;

// Text <-> token ids. encode() never adds BOS/EOS itself: callers decide (perplexity and
// generation conventions differ), using bos_id()/eos_id().
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  // Concatenated text of the ids; control tokens (BOS/EOS) decode to nothing.
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  // Text of a single token as it appears in generated output, given the previous token
  // (SentencePiece strips the leading space of the first piece after BOS).
  virtual std::string token_text(int32_t id, int32_t previous_id) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
  virtual bool add_bos() const = 0;
  // The vocabulary in GGUF's terms, for writing GGUF files.
  virtual Vocab to_vocab() const = 0;
};

// Picks the tokenizer for a checkpoint: its tokenizer file (.model via libsentencepiece,
// tokenizer.json byte-level BPE, llama2.c tokenizer.bin) or, for GGUF, the embedded vocabulary.
// Throws Error when none is available.
std::unique_ptr<Tokenizer> load_tokenizer(const Checkpoint& checkpoint);
// Same, from an explicit file (kind chosen by name and content). vocab_size is needed for tokenizer.bin.
std::unique_ptr<Tokenizer> load_tokenizer_file(const std::string& path, int64_t vocab_size);
std::unique_ptr<Tokenizer> tokenizer_from_vocab(const Vocab& vocab, const std::string& source);

}  // namespace llmpress

#pragma once
// Byte-level BPE by merge rank (GPT-2, Llama 3, Qwen2; GGUF model "gpt2", Hugging Face
// tokenizer.json): added tokens are cut out of the raw text first, the rest is split by the
// pre-tokenizer regex, each piece's bytes are mapped to GPT-2's printable alphabet and merged
// pairwise, lowest merge rank first (leftmost on ties).
#include <array>
#include <memory>
#include <string_view>
#include <unordered_map>

#include "llmpress/tokenizer/literal_token_matcher.h"
#include "llmpress/tokenizer/pretokenizer.h"
#include "llmpress/tokenizer/tokenizer.h"

namespace llmpress {

struct BpeSettings {
  std::string split_pattern;   // PCRE2 regex of the pre-tokenizer; empty: no splitting
  bool ignore_merges = false;  // a piece that is a whole vocabulary entry is emitted as is (Llama 3)
  bool byte_fallback = false;  // a byte outside the vocabulary becomes its <0xXX> token
  // Whether control tokens (type 3) written in the text are recognised. Hugging Face does this
  // for all added tokens; llama.cpp (the reference for GGUF) only for user-defined ones.
  bool match_control_tokens = false;
  bool add_prefix_space = false;  // ByteLevel add_prefix_space: a space before text not starting with one
};

class BpeTokenizer : public Tokenizer {
 public:
  // vocab.merges holds "left right" strings (rank = index). Throws Error naming `source` when a
  // merge is malformed or refers to tokens missing from the vocabulary.
  BpeTokenizer(Vocab vocab, BpeSettings settings, const std::string& source);
  BpeTokenizer(const BpeTokenizer&) = delete;
  BpeTokenizer& operator=(const BpeTokenizer&) = delete;

  std::vector<int32_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string token_text(int32_t id, int32_t previous_id) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.tokens.size()); }
  int32_t bos_id() const override { return static_cast<int32_t>(vocab_.bos_id); }
  int32_t eos_id() const override { return static_cast<int32_t>(vocab_.eos_id); }
  bool add_bos() const override { return vocab_.add_bos; }
  Vocab to_vocab() const override { return vocab_; }
  const BpeSettings& settings() const { return settings_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
  void emit_unmergeable(unsigned char byte, std::vector<int32_t>& out) const;
  int32_t type_of(int32_t id) const;

  Vocab vocab_;
  BpeSettings settings_;
  std::string source_;
  std::unique_ptr<RegexSplitter> splitter_;
  std::unordered_map<std::string_view, int32_t> ids_;  // views into vocab_.tokens
  std::unordered_map<uint64_t, Merge> merges_;         // (left id << 32 | right id) -> merge
  std::array<int32_t, 256> byte_symbol_ids_;           // token of each byte's mapped character
  std::array<int32_t, 256> byte_fallback_ids_;         // <0xXX> tokens
  LiteralTokenMatcher added_;
};

}  // namespace llmpress

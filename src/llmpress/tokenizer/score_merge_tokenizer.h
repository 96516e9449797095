#pragma once
// SentencePiece-style BPE by piece score (GGUF model "llama", llama2.c tokenizer.bin): spaces
// become U+2581, a space is prefixed, characters are merged pairwise, highest-scoring vocabulary
// piece first (leftmost on ties), and characters missing from the vocabulary fall back to
// <0xXX> byte pieces. Follows llama.cpp's SPM tokenizer, the reference for GGUF vocabularies;
// unlike libsentencepiece it does not collapse runs of spaces.
#include <array>
#include <string_view>
#include <unordered_map>

#include "llmpress/tokenizer/literal_token_matcher.h"
#include "llmpress/tokenizer/tokenizer.h"

namespace llmpress {

class ScoreMergeTokenizer : public Tokenizer {
 public:
  // `source` names the file in errors (bad sizes, no tokens).
  ScoreMergeTokenizer(Vocab vocab, const std::string& source);
  ScoreMergeTokenizer(const ScoreMergeTokenizer&) = delete;
  ScoreMergeTokenizer& operator=(const ScoreMergeTokenizer&) = delete;

  std::vector<int32_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string token_text(int32_t id, int32_t previous_id) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.tokens.size()); }
  int32_t bos_id() const override { return static_cast<int32_t>(vocab_.bos_id); }
  int32_t eos_id() const override { return static_cast<int32_t>(vocab_.eos_id); }
  bool add_bos() const override { return vocab_.add_bos; }
  Vocab to_vocab() const override { return vocab_; }

 private:
  void encode_text(std::string_view text, bool prefix_space, std::vector<int32_t>& out) const;
  void emit_bytes(std::string_view symbol, std::vector<int32_t>& out) const;
  std::string piece_bytes(int32_t id) const;  // what one token decodes to, before prefix stripping
  bool resets_prefix(int32_t id) const;       // a token after which encode prefixes a space again
  int32_t type_of(int32_t id) const;

  Vocab vocab_;
  std::string source_;
  std::unordered_map<std::string_view, int32_t> ids_;  // views into vocab_.tokens
  std::array<int32_t, 256> byte_ids_;                  // <0xXX> pieces, -1 when absent
  LiteralTokenMatcher user_defined_;                   // matched in raw text first, like llama.cpp
};

}  // namespace llmpress

#pragma once
// A small fixed vocabulary for the harnesses whose readers need a tokenizer (training records).
#include <cstdio>

#include "llmpress/tokenizer/tokenizer.h"

namespace fuzz {

// SentencePiece-style: <unk>, <s>, </s>, the 256 byte tokens, then a few whole words.
inline const llmpress::Tokenizer& synthetic_tokenizer() {
  static const std::unique_ptr<llmpress::Tokenizer> tokenizer = [] {
    llmpress::Vocab v;
    v.model = "llama";
    v.pre = "default";
    const char* words[] = {"\xe2\x96\x81" "the", "\xe2\x96\x81" "a", "\xe2\x96\x81" "Answer", ":", "\xe2\x96\x81" "+"};
    for (int i = 0; i < 259 + 5; ++i) {
      char piece[16];
      std::snprintf(piece, sizeof piece, "<0x%02X>", (i - 3) & 0xff);
      v.tokens.push_back(i == 0 ? "<unk>" : i == 1 ? "<s>" : i == 2 ? "</s>" : i < 259 ? piece : words[i - 259]);
      v.scores.push_back(i < 259 ? 0.0f : -float(i));
      v.types.push_back(i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1);
    }
    v.bos_id = 1;
    v.eos_id = 2;
    v.unk_id = 0;
    return llmpress::tokenizer_from_vocab(v, "synthetic vocabulary");
  }();
  return *tokenizer;
}

}  // namespace fuzz

// decode(encode(s)) == s for every tokenizer with byte fallback, on awkward text; and what
// libsentencepiece's normalization keeps.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "../test_util.h"
#include "llmpress/tokenizer/llama2c_tokenizer_file.h"
#include "llmpress/tokenizer/score_merge_tokenizer.h"
#include "llmpress/tokenizer/sentencepiece_tokenizer.h"
#include "tokenizer_test_util.h"

namespace llmpress {
namespace {

const std::vector<std::string>& awkward_texts() {
  static const std::vector<std::string> texts = {
      "",
      " ",
      "   ",
      "  leading and trailing  ",
      "multiple   spaces\tand\ttabs",
      "line\nbreaks\r\n\n\nhere\n",
      "caf\xC3\xA9 na\xC3\xAFve r\xC3\xA9sum\xC3\xA9",                      // accents (precomposed)
      "cafe\xCC\x81 e\xCC\x81\xCC\x81",                                     // combining acute accents
      "\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C",        // 你好，世界
      "\xF0\x9F\xA6\x99 \xF0\x9F\x98\xB6\xE2\x80\x8D\xF0\x9F\x8C\xAB\xEF\xB8\x8F",  // 🦙 😶‍🌫️
      std::string("control\x01\x02\x1f\x7f chars") + std::string(1, '\0') + "nul",
      "\xEF\xAC\x81 ligature, \xE2\x84\xAB angstrom, \xEF\xBC\xA1 fullwidth",  // NFKC would change these
      "<s> </s> <unk> <0x41> look like special tokens",
      "Once upon a time, there was a little girl named Lily.",
  };
  return texts;
}

void expect_round_trip(const Tokenizer& tokenizer, const std::string& name) {
  for (const std::string& text : awkward_texts()) {
    const std::vector<int32_t> ids = tokenizer.encode(text);
    EXPECT_EQ(tokenizer.decode(ids), text) << name << " on \"" << text << "\"";
    if (text.empty()) EXPECT_TRUE(ids.empty()) << name;
    // With BOS in front the text is the same (BOS decodes to nothing).
    std::vector<int32_t> with_bos = {tokenizer.bos_id()};
    with_bos.insert(with_bos.end(), ids.begin(), ids.end());
    EXPECT_EQ(tokenizer.decode(with_bos), text) << name << " with BOS on \"" << text << "\"";
    // token_text pieces concatenate to the same text.
    std::string pieces;
    int32_t previous = -1;
    for (int32_t id : ids) {
      pieces += tokenizer.token_text(id, previous);
      previous = id;
    }
    EXPECT_EQ(pieces, text) << name;
  }
}

TEST(TokenizerRoundTrip, ScoreMergeFromLlama2cFile) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/tok512.bin");
  const std::string path = test::shared_path("models/stories260K/tok512.bin");
  const ScoreMergeTokenizer tokenizer(read_llama2c_tokenizer(path, 512), path);
  expect_round_trip(tokenizer, "tok512.bin");
}

TEST(TokenizerRoundTrip, GgufVocabularies) {
  const char* dir = std::getenv("LLMPRESS_LLAMACPP_VOCAB_DIR");
  if (!dir) GTEST_SKIP() << "set LLMPRESS_LLAMACPP_VOCAB_DIR (see test_tokenizer_llamacpp_vocab.cpp)";
  for (const char* name : {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"}) {
    const std::string path = std::string(dir) + "/" + name;
    if (!std::filesystem::exists(path)) continue;
    const auto tokenizer = tokenizer_from_vocab(test::read_gguf_vocab(path), path);
    expect_round_trip(*tokenizer, name);
  }
}

TEST(TokenizerRoundTrip, SentencePieceModelNormalizesSpaces) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/tok512.model");
  const SentencePieceTokenizer tokenizer(test::shared_path("models/stories260K/tok512.model"));
  // Byte fallback makes unseen characters survive...
  for (const std::string text : {"caf\xC3\xA9 na\xC3\xAFve", "\xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\xA6\x99",
                                 "line\nbreaks", "Once upon a time, there was a little girl named Lily."})
    EXPECT_EQ(tokenizer.decode(tokenizer.encode(text)), text);
  EXPECT_TRUE(tokenizer.encode("").empty());
  // ...but the normalizer trims and collapses spaces (remove_extra_whitespaces), like libsentencepiece.
  EXPECT_EQ(tokenizer.decode(tokenizer.encode("  leading and   inner  ")), "leading and inner");
  EXPECT_FALSE(tokenizer.has_unapplied_charsmap());  // tok512 uses the identity normalizer
}

}  // namespace
}  // namespace llmpress

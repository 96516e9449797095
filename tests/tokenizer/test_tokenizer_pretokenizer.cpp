// Regex pre-tokenization. Expected splits follow from the regex definitions in formats.md 7.2
// (worked by hand: alternatives are tried left to right at each position, quantifiers greedy).
#include <gtest/gtest.h>

#include "llmpress/core/error.h"
#include "llmpress/tokenizer/pretokenizer.h"

namespace llmpress {
namespace {

using Pieces = std::vector<std::string>;

Pieces split(const std::string& pattern, const std::string& text) {
  const RegexSplitter splitter(pattern, "test");
  Pieces out;
  for (std::string_view piece : splitter.split(text)) out.emplace_back(piece);
  return out;
}

TEST(TokenizerPretokenizer, Gpt2Split) {
  const std::string& p = gpt2_split_pattern();
  // " ?\p{L}+" keeps one leading space; "\s+(?!\S)" leaves the last space of a run for the word.
  EXPECT_EQ(split(p, "Hello world's 123  foo"), (Pieces{"Hello", " world", "'s", " 123", " ", " foo"}));
  // Contractions are case-sensitive in GPT-2: "'VE" is punctuation then letters.
  EXPECT_EQ(split(p, "I'VE"), (Pieces{"I", "'", "VE"}));
  // Digits are not grouped by three.
  EXPECT_EQ(split(p, "12345"), (Pieces{"12345"}));
  // "\n\nbar": "\s+(?!\S)" takes the first newline, "\s+" the second.
  EXPECT_EQ(split(p, "a\n\nbar"), (Pieces{"a", "\n", "\n", "bar"}));
  EXPECT_EQ(split(p, "(hi"), (Pieces{"(", "hi"}));
  EXPECT_EQ(split(p, " \xF0\x9F\xA6\x99.cpp"), (Pieces{" \xF0\x9F\xA6\x99.", "cpp"}));  // " 🦙." then "cpp"
  EXPECT_EQ(split(p, "\xE4\xBD\xA0\xE5\xA5\xBD \xE4\xB8\x96\xE7\x95\x8C"),  // "你好 世界": letters by Unicode property
            (Pieces{"\xE4\xBD\xA0\xE5\xA5\xBD", " \xE4\xB8\x96\xE7\x95\x8C"}));
  EXPECT_EQ(split(p, "caf\xC3\xA9!"), (Pieces{"caf\xC3\xA9", "!"}));  // é is \p{L}
  EXPECT_EQ(split(p, "x   "), (Pieces{"x", "   "}));                   // trailing run kept whole
}

TEST(TokenizerPretokenizer, Llama3Split) {
  const std::string& p = llama3_split_pattern();
  // Case-insensitive contractions; digits in groups of at most three; "\s*[\r\n]+" keeps
  // newlines together; a lone space before a number is its own piece.
  EXPECT_EQ(split(p, "I'VE 12345 apples\n\n  x"),
            (Pieces{"I", "'VE", " ", "123", "45", " apples", "\n\n", " ", " x"}));
  // "[^\r\n\p{L}\p{N}]?\p{L}+": one non-letter may lead a word.
  EXPECT_EQ(split(p, "(hi"), (Pieces{"(hi"}));
  // " ?[^\s\p{L}\p{N}]+[\r\n]*" takes trailing newlines with punctuation.
  EXPECT_EQ(split(p, "end...\nNext"), (Pieces{"end", "...\n", "Next"}));
  EXPECT_EQ(split(p, " \xF0\x9F\xA6\x99.cpp"), (Pieces{" \xF0\x9F\xA6\x99.", "cpp"}));
  EXPECT_EQ(split(p, "1234567"), (Pieces{"123", "456", "7"}));
  EXPECT_EQ(split(p, "\xE4\xBD\xA0\xE5\xA5\xBD\xE4\xB8\x96\xE7\x95\x8C"), (Pieces{"\xE4\xBD\xA0\xE5\xA5\xBD\xE4\xB8\x96\xE7\x95\x8C"}));
}

TEST(TokenizerPretokenizer, Qwen2SplitsDigitsSingly) {
  const std::string& p = qwen2_split_pattern();
  EXPECT_EQ(split(p, "I'VE 12345 apples"), (Pieces{"I", "'VE", " ", "1", "2", "3", "4", "5", " apples"}));
  EXPECT_EQ(split(p, "(hi\n\n"), (Pieces{"(hi", "\n\n"}));
}

TEST(TokenizerPretokenizer, IsolatedKeepsGapsAndInvalidUtf8) {
  // Text between matches becomes its own piece (Split behaviour Isolated).
  EXPECT_EQ(split("a", "xay"), (Pieces{"x", "a", "y"}));
  // Invalid UTF-8 does not stop the split; pieces still cover every byte in order.
  const std::string text = "ab\xFF\xFE cd \xC3";
  std::string joined;
  for (const auto& piece : split(gpt2_split_pattern(), text)) joined += piece;
  EXPECT_EQ(joined, text);
  EXPECT_THROW(RegexSplitter("(unclosed", "test"), Error);
}

TEST(TokenizerPretokenizer, PreNamesAndPatterns) {
  EXPECT_EQ(pre_for_split_pattern(llama3_split_pattern()), "llama-bpe");
  EXPECT_EQ(pre_for_split_pattern(qwen2_split_pattern()), "qwen2");
  EXPECT_EQ(pre_for_split_pattern(gpt2_split_pattern()), "gpt-2");
  EXPECT_EQ(split_pattern_for_pre("llama-bpe"), llama3_split_pattern());
  EXPECT_EQ(split_pattern_for_pre("qwen2"), qwen2_split_pattern());
  EXPECT_EQ(split_pattern_for_pre("gpt-2"), gpt2_split_pattern());
  EXPECT_EQ(split_pattern_for_pre("no-such-pre"), "");
}

}  // namespace
}  // namespace llmpress

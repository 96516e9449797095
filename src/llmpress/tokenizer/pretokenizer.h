#pragma once
// Regex pre-tokenization for byte-level BPE: text is cut into pieces (words, number groups,
// punctuation runs, whitespace) and BPE merges never cross a piece boundary.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace llmpress {

// The split regexes (formats.md 7.2), as PCRE2 patterns.
const std::string& gpt2_split_pattern();
const std::string& llama3_split_pattern();  // GGUF pre "llama-bpe"
const std::string& qwen2_split_pattern();   // GGUF pre "qwen2"

// Pattern for a GGUF tokenizer.ggml.pre value; empty string when the name is not supported.
std::string split_pattern_for_pre(const std::string& pre);
// GGUF pre name that best describes a pattern ("gpt-2", "llama-bpe", "qwen2").
std::string pre_for_split_pattern(const std::string& pattern);

// Splits like a tokenizers "Split" pre-tokenizer with behaviour Isolated: every match is a
// piece, and so is every non-empty stretch between matches. Uses PCRE2 with UTF and UCP
// (\p{L}, \s etc. by Unicode properties) and tolerates invalid UTF-8.
class RegexSplitter {
 public:
  // Throws Error naming `source` when the pattern does not compile.
  RegexSplitter(const std::string& pattern, const std::string& source);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  std::vector<std::string_view> split(std::string_view text) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*, kept opaque to keep PCRE2 out of the header
};

}  // namespace llmpress

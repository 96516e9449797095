#include "llmpress/tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "llmpress/core/error.h"

namespace llmpress {

const std::string& gpt2_split_pattern() {
  static const std::string pattern =
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
  return pattern;
}

const std::string& llama3_split_pattern() {
  static const std::string pattern =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  return pattern;
}

const std::string& qwen2_split_pattern() {
  static const std::string pattern =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  return pattern;
}

std::string split_pattern_for_pre(const std::string& pre) {
  // "default" in llama.cpp is a multi-regex of its own; GPT-2's regex is its closest single form.
  if (pre == "gpt-2" || pre == "default" || pre.empty()) return gpt2_split_pattern();
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") return llama3_split_pattern();
  if (pre == "qwen2" || pre == "deepseek-r1-qwen") return qwen2_split_pattern();
  return "";
}

std::string pre_for_split_pattern(const std::string& pattern) {
  if (pattern == llama3_split_pattern()) return "llama-bpe";
  if (pattern == qwen2_split_pattern()) return "qwen2";
  if (pattern == gpt2_split_pattern()) return "gpt-2";
  // Variants (e.g. different escaping): judge by the digit rule, the main behavioural difference.
  if (pattern.find(R"(\p{N}{1,3})") != std::string::npos) return "llama-bpe";
  if (pattern.find(R"([^\r\n\p{L}\p{N}]?\p{L}+)") != std::string::npos) return "qwen2";
  return "gpt-2";
}

RegexSplitter::RegexSplitter(const std::string& pattern, const std::string& source) : pattern_(pattern) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error_code,
                                   &error_offset, nullptr);
  if (!code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    throw file_error(source, "cannot compile pre-tokenizer regex at offset " + std::to_string(error_offset) +
                                 ": " + reinterpret_cast<const char*>(message));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
  code_ = code;
}

RegexSplitter::~RegexSplitter() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

std::vector<std::string_view> RegexSplitter::split(std::string_view text) const {
  auto* code = static_cast<pcre2_code*>(code_);
  std::vector<std::string_view> pieces;
  // Long whitespace runs backtrack through \s+(?!\S); give the JIT more than its 32 KiB default.
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, nullptr);
  pcre2_jit_stack_assign(context, nullptr, stack);
  pcre2_match_data* match = pcre2_match_data_create_from_pattern(code, nullptr);

  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0, gap_start = 0;
  int status = 0;
  while (pos <= text.size()) {
    status = pcre2_match(code, subject, text.size(), pos, 0, match, context);
    if (status < 0) break;
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
    const size_t begin = ovector[0], end = ovector[1];
    if (end == begin) {  // none of our patterns matches empty, but never loop forever
      pos = begin + 1;
      continue;
    }
    if (begin > gap_start) pieces.push_back(text.substr(gap_start, begin - gap_start));
    pieces.push_back(text.substr(begin, end - begin));
    pos = gap_start = end;
  }
  pcre2_match_data_free(match);
  pcre2_jit_stack_free(stack);
  pcre2_match_context_free(context);
  if (status < 0 && status != PCRE2_ERROR_NOMATCH)
    throw Error("pre-tokenizer regex failed with PCRE2 error " + std::to_string(status));
  if (gap_start < text.size()) pieces.push_back(text.substr(gap_start));
  return pieces;
}

}  // namespace llmpress

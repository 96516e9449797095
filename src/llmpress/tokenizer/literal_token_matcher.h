#pragma once
// Finds added/special tokens (e.g. "<|endoftext|>") in raw text before the model runs, the way
// Hugging Face's added vocabulary and llama.cpp's special-token partitioning do.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmpress {

// A piece of the input: either raw text for the model (token < 0) or one matched token.
struct TextFragment {
  std::string_view text;
  int32_t token = -1;
};

class LiteralTokenMatcher {
 public:
  void add(const std::string& text, int32_t id);
  bool empty() const { return count_ == 0; }
  // Splits text at the leftmost occurrences of added tokens, longest token first at each place.
  // Raw-text fragments are never empty.
  std::vector<TextFragment> split(std::string_view text) const;

 private:
  // Candidates grouped by first byte, longest first, so a scan costs one table look-up per byte.
  std::vector<std::pair<std::string, int32_t>> by_first_byte_[256];
  size_t count_ = 0;
};

}  // namespace llmpress

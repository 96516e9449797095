#include "llmpress/tokenizer/literal_token_matcher.h"

#include <algorithm>

namespace llmpress {

void LiteralTokenMatcher::add(const std::string& text, int32_t id) {
  if (text.empty()) return;
  auto& bucket = by_first_byte_[static_cast<unsigned char>(text[0])];
  bucket.emplace_back(text, id);
  std::stable_sort(bucket.begin(), bucket.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  ++count_;
}

std::vector<TextFragment> LiteralTokenMatcher::split(std::string_view text) const {
  std::vector<TextFragment> fragments;
  size_t raw_start = 0;
  for (size_t pos = 0; pos < text.size();) {
    const auto& bucket = by_first_byte_[static_cast<unsigned char>(text[pos])];
    const std::pair<std::string, int32_t>* match = nullptr;
    for (const auto& candidate : bucket) {
      if (text.compare(pos, candidate.first.size(), candidate.first) == 0) {
        match = &candidate;
        break;
      }
    }
    if (!match) {
      ++pos;
      continue;
    }
    if (pos > raw_start) fragments.push_back({text.substr(raw_start, pos - raw_start), -1});
    fragments.push_back({text.substr(pos, match->first.size()), match->second});
    pos += match->first.size();
    raw_start = pos;
  }
  if (raw_start < text.size()) fragments.push_back({text.substr(raw_start), -1});
  return fragments;
}

}  // namespace llmpress

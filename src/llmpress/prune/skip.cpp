#include "llmpress/prune/skip.h"

#include "llmpress/core/error.h"

namespace llmpress {

SkippingCompressor::SkippingCompressor(std::unique_ptr<Compressor> inner, const std::string& pattern)
    : inner_(std::move(inner)), pattern_(pattern) {
  try {
    if (!pattern.empty()) regex_ = std::regex(pattern);
  } catch (const std::regex_error& e) {
    throw Error("--skip '" + pattern + "': not a valid regular expression (" + e.what() + ")");
  }
}

std::string SkippingCompressor::describe() const {
  return pattern_.empty() ? inner_->describe() : inner_->describe() + " skip /" + pattern_ + "/";
}

bool SkippingCompressor::skips(const std::string& name) const {
  return !pattern_.empty() && std::regex_search(name, regex_);
}

std::shared_ptr<LinearWeight> SkippingCompressor::compress(const std::string& name, const Linear& linear,
                                                           const InputStats& stats) {
  if (skips(name)) {
    skipped_.push_back(name);
    return linear.weight;
  }
  return inner_->compress(name, linear, stats);
}

}  // namespace llmpress

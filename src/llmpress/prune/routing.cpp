#include "llmpress/prune/routing.h"

#include "llmpress/core/error.h"

namespace llmpress {

namespace {

std::regex compile(const std::string& pattern, const std::string& option) {
  try {
    return std::regex(pattern);
  } catch (const std::regex_error& e) {
    throw Error(option + " '" + pattern + "': not a valid regular expression (" + e.what() + ")");
  }
}

}  // namespace

RoutingCompressor::RoutingCompressor(std::unique_ptr<Compressor> fallback, const std::string& skip_pattern)
    : fallback_(std::move(fallback)), skip_pattern_(skip_pattern) {
  if (!skip_pattern.empty()) skip_regex_ = compile(skip_pattern, "--skip");
}

void RoutingCompressor::add_rule(const std::string& pattern, std::unique_ptr<Compressor> compressor) {
  rules_.push_back({pattern, compile(pattern, "--sparsity-for"), std::move(compressor)});
}

std::string RoutingCompressor::describe() const {
  std::string text = fallback_->describe();
  for (const Rule& rule : rules_) text += "; /" + rule.pattern + "/: " + rule.compressor->describe();
  if (!skip_pattern_.empty()) text += "; skip /" + skip_pattern_ + "/";
  return text;
}

StatsRequest RoutingCompressor::needs() const {
  StatsRequest request = fallback_->needs();
  for (const Rule& rule : rules_) request = request.merged(rule.compressor->needs());
  return request;
}

bool RoutingCompressor::skips(const std::string& name) const {
  return !skip_pattern_.empty() && std::regex_search(name, skip_regex_);
}

Compressor* RoutingCompressor::route(const std::string& name) const {
  if (skips(name)) return nullptr;
  for (const Rule& rule : rules_)
    if (std::regex_search(name, rule.regex)) return rule.compressor.get();
  return fallback_.get();
}

std::shared_ptr<LinearWeight> RoutingCompressor::compress(const std::string& name, const Linear& linear,
                                                          const InputStats& stats) {
  Compressor* target = route(name);
  if (!target) {
    skipped_.push_back(name);
    return linear.weight;
  }
  return target->compress(name, linear, stats);
}

}  // namespace llmpress

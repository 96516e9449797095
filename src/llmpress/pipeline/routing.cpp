#include "llmpress/pipeline/routing.h"

#include "llmpress/core/error.h"

namespace llmpress {

std::regex compile_pattern(const std::string& pattern, const std::string& option) {
  try {
    return std::regex(pattern);
  } catch (const std::regex_error& e) {
    throw Error(option + " '" + pattern + "': not a valid regular expression (" + e.what() + ")");
  }
}

RoutingCompressor::RoutingCompressor(std::unique_ptr<Compressor> fallback, const std::vector<std::string>& targets,
                                     const std::vector<std::string>& ignore)
    : fallback_(std::move(fallback)) {
  for (const std::string& t : targets) targets_.push_back({t, compile_pattern(t, "targets")});
  for (const std::string& t : ignore) ignore_.push_back({t, compile_pattern(t, "ignore")});
}

void RoutingCompressor::add_rule(const std::string& pattern, std::unique_ptr<Compressor> compressor) {
  rules_.push_back({{pattern, compile_pattern(pattern, "rule")}, std::move(compressor)});
}

std::string RoutingCompressor::describe() const {
  std::string text = fallback_->describe();
  for (const Rule& rule : rules_) text += "; /" + rule.pattern.text + "/: " + rule.compressor->describe();
  for (const Pattern& p : targets_) text += "; only /" + p.text + "/";
  for (const Pattern& p : ignore_) text += "; skip /" + p.text + "/";
  return text;
}

StatsRequest RoutingCompressor::needs() const {
  StatsRequest request = fallback_->needs();
  for (const Rule& rule : rules_) request = request.merged(rule.compressor->needs());
  return request;
}

bool RoutingCompressor::skips(const std::string& name) const {
  bool targeted = targets_.empty();
  for (const Pattern& p : targets_) targeted = targeted || std::regex_search(name, p.regex);
  if (!targeted) return true;
  for (const Pattern& p : ignore_)
    if (std::regex_search(name, p.regex)) return true;
  return false;
}

Compressor* RoutingCompressor::route(const std::string& name) const {
  if (skips(name)) return nullptr;
  for (const Rule& rule : rules_)
    if (std::regex_search(name, rule.pattern.regex)) return rule.compressor.get();
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

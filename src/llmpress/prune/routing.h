#pragma once
// Chooses per linear layer, by name, what happens to it: left untouched when it matches the skip
// pattern (`--skip`), handed to the compressor of the first matching rule (`--sparsity-for
// REGEX=S`), or to the default compressor. Patterns are ECMAScript regexes searched in the name
// without ".weight" ("model.layers.3.mlp.down_proj").
#include <regex>
#include <vector>

#include "llmpress/calib/compressor.h"

namespace llmpress {

class RoutingCompressor : public Compressor {
 public:
  // Empty skip pattern: nothing skipped. Throws Error for an invalid pattern.
  RoutingCompressor(std::unique_ptr<Compressor> fallback, const std::string& skip_pattern);
  // Rules are tried in the order added. Their compressors must save and restore the same weight
  // kinds as the default one (save/restore go to the default).
  void add_rule(const std::string& pattern, std::unique_ptr<Compressor> compressor);

  std::string describe() const override;
  StatsRequest needs() const override;
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override;
  std::map<std::string, at::Tensor> save(const LinearWeight& weight) const override { return fallback_->save(weight); }
  std::shared_ptr<LinearWeight> restore(const std::string& kind,
                                        const std::map<std::string, at::Tensor>& state) const override {
    return fallback_->restore(kind, state);
  }

  bool skips(const std::string& name) const;
  // The compressor that `name` goes to (nullptr when skipped).
  Compressor* route(const std::string& name) const;
  const std::vector<std::string>& skipped() const { return skipped_; }  // names skipped so far

 private:
  struct Rule {
    std::string pattern;
    std::regex regex;
    std::unique_ptr<Compressor> compressor;
  };
  std::unique_ptr<Compressor> fallback_;
  std::string skip_pattern_;
  std::regex skip_regex_;
  std::vector<Rule> rules_;
  std::vector<std::string> skipped_;
};

}  // namespace llmpress

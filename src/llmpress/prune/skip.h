#pragma once
// Leaves the linear layers whose name matches a regular expression untouched and hands every
// other one to the wrapped compressor (`--skip PATTERN`).
#include <regex>
#include <vector>

#include "llmpress/calib/compressor.h"

namespace llmpress {

class SkippingCompressor : public Compressor {
 public:
  // `pattern`: ECMAScript regex searched in the name without ".weight"; empty skips nothing.
  // Throws Error for an invalid pattern.
  SkippingCompressor(std::unique_ptr<Compressor> inner, const std::string& pattern);
  std::string describe() const override;
  StatsRequest needs() const override { return inner_->needs(); }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override;
  std::map<std::string, at::Tensor> save(const LinearWeight& weight) const override { return inner_->save(weight); }
  std::shared_ptr<LinearWeight> restore(const std::string& kind,
                                        const std::map<std::string, at::Tensor>& state) const override {
    return inner_->restore(kind, state);
  }

  bool skips(const std::string& name) const;
  const std::vector<std::string>& skipped() const { return skipped_; }  // names skipped so far

 private:
  std::unique_ptr<Compressor> inner_;
  std::string pattern_;
  std::regex regex_;
  std::vector<std::string> skipped_;
};

}  // namespace llmpress

#include "llmpress/calib/observers.h"

namespace llmpress {

void HessianObserver::observe(const at::Tensor& x) {
  const at::Tensor x64 = x.to(at::kDouble);
  const at::Tensor batch = at::matmul(x64.t(), x64);
  sum_ = sum_.defined() ? sum_.add_(batch) : batch;
  tokens_ += x.size(0);
}

void HessianObserver::finish(InputStats& stats) const {
  if (!sum_.defined()) return;
  stats.hessian = sum_ / double(tokens_);
  stats.tokens = tokens_;
}

void InputNormObserver::observe(const at::Tensor& x) {
  const at::Tensor x64 = x.to(at::kDouble);
  const at::Tensor squares = x64.pow(2).sum(0), absolute = x64.abs().sum(0);
  sum_squares_ = sum_squares_.defined() ? sum_squares_.add_(squares) : squares;
  sum_abs_ = sum_abs_.defined() ? sum_abs_.add_(absolute) : absolute;
  tokens_ += x.size(0);
}

void InputNormObserver::finish(InputStats& stats) const {
  if (!sum_squares_.defined()) return;
  stats.sum_squares = sum_squares_;
  stats.mean_abs = sum_abs_ / double(tokens_);
  stats.tokens = tokens_;
}

void InputSampleObserver::observe(const at::Tensor& x) {
  if (kept_ >= max_rows_) return;
  const int64_t take = std::min(max_rows_ - kept_, x.size(0));
  rows_.push_back(x.narrow(0, 0, take).to(at::kFloat).clone());
  kept_ += take;
}

void InputSampleObserver::finish(InputStats& stats) const {
  if (!rows_.empty()) stats.samples = at::cat(rows_, 0);
}

}  // namespace llmpress

#include "llmpress/calib/observers.h"

#include "llmpress/distributed/communicator.h"

namespace llmpress {

void HessianObserver::observe(const at::Tensor& x) {
  const at::Tensor xs = x.to(float32_batches_ ? at::kFloat : at::kDouble);
  const at::Tensor batch = at::matmul(xs.t(), xs).to(at::kDouble);
  sum_ = sum_.defined() ? sum_.add_(batch) : batch;
  tokens_ += x.size(0);
}

// Token counts travel with the sums (as float64: exact up to 2^53 tokens).
void HessianObserver::reduce(const Communicator& group) {
  at::Tensor tokens = at::full({1}, double(tokens_), at::kDouble);
  group.all_reduce_sum({sum_, tokens});
  tokens_ = int64_t(tokens.item<double>());
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

void InputNormObserver::reduce(const Communicator& group) {
  at::Tensor tokens = at::full({1}, double(tokens_), at::kDouble);
  group.all_reduce_sum({sum_squares_, sum_abs_, tokens});
  tokens_ = int64_t(tokens.item<double>());
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

void InputSampleObserver::reduce(const Communicator& group) {
  if (rows_.empty()) return;  // every rank observes the same layer, so none is empty
  const at::Tensor mine = at::cat(rows_, 0);
  const int64_t world = group.world_size(), width = mine.size(1);
  // A gather as a sum: each rank fills its own slot of a zero buffer.
  at::Tensor slots = at::zeros({world, max_rows_, width}, at::kFloat);
  at::Tensor counts = at::zeros({world}, at::kFloat);
  slots[group.rank()].narrow(0, 0, mine.size(0)).copy_(mine.to(at::kCPU));
  counts[group.rank()] = float(mine.size(0));
  group.all_reduce_sum({slots, counts});
  rows_.clear();
  kept_ = 0;
  for (int64_t r = 0; r < world && kept_ < max_rows_; ++r) {
    const int64_t take = std::min(max_rows_ - kept_, int64_t(counts[r].item<float>()));
    rows_.push_back(slots[r].narrow(0, 0, take).to(mine.device()).clone());
    kept_ += take;
  }
}

void InputSampleObserver::finish(InputStats& stats) const {
  if (!rows_.empty()) stats.samples = at::cat(rows_, 0);
}

}  // namespace llmpress

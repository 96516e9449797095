#pragma once
// A linear weight wrapped for a calibration pass: `observe` sees every input (the engine's Hessians and
// norms, structured pruning's channel moments, SmoothQuant's maxima), then the wrapped weight computes
// as it would. Everything else is the wrapped weight's.
#include <functional>
#include <memory>

#include "llmpress/model/linear.h"

namespace llmpress {

class ObservedWeight : public LinearWeight {
 public:
  ObservedWeight(std::shared_ptr<LinearWeight> inner, std::function<void(const at::Tensor& x)> observe)
      : inner_(std::move(inner)), observe_(std::move(observe)) {}
  at::Tensor forward(const at::Tensor& x) const override {
    observe_(x.detach());
    return inner_->forward(x);
  }
  int64_t in_features() const override { return inner_->in_features(); }
  int64_t out_features() const override { return inner_->out_features(); }
  int64_t storage_bits() const override { return inner_->storage_bits(); }
  at::Tensor dense() const override { return inner_->dense(); }
  std::string kind() const override { return inner_->kind(); }
  WeightState save() const override { return inner_->save(); }
  PruningMask pruning_mask() const override { return inner_->pruning_mask(); }

 private:
  std::shared_ptr<LinearWeight> inner_;
  std::function<void(const at::Tensor& x)> observe_;
};

}  // namespace llmpress

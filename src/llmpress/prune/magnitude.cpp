#include "llmpress/prune/magnitude.h"

#include <cstdio>

#include "llmpress/core/error.h"
#include "llmpress/model/sparse_weight.h"

namespace llmpress {

double global_magnitude_threshold(const std::vector<at::Tensor>& weights, double sparsity) {
  SparsityTarget::unstructured(sparsity);
  std::vector<at::Tensor> flat;
  int64_t total = 0;
  for (const at::Tensor& w : weights) {
    flat.push_back(w.to(at::kFloat).abs().reshape({-1}));
    total += w.numel();
  }
  const int64_t k = pruned_count(total, sparsity);
  if (k == 0) return -1.0;  // below every |w|: nothing is removed
  return std::get<0>(at::kthvalue(at::cat(flat), k)).item<double>();
}

at::Tensor magnitude_prune(const at::Tensor& weight, const SparsityTarget& target, MaskScope scope) {
  const at::Tensor w = weight.to(at::kFloat);
  return w.masked_fill(select_mask(w.abs(), target, scope), 0.0);
}

MagnitudeCompressor::MagnitudeCompressor(SparsityTarget target, MaskScope scope) : target_(target), scope_(scope) {
  target_.check();
}

MagnitudeCompressor::MagnitudeCompressor(double global_threshold)
    : global_(true), global_threshold_(global_threshold) {}

std::string MagnitudeCompressor::describe() const {
  if (global_) {
    char text[64];
    std::snprintf(text, sizeof text, "magnitude global |w| <= %.6g", global_threshold_);
    return text;
  }
  if (target_.semi_structured()) return "magnitude " + target_.describe();
  return "magnitude " + target_.describe() + (scope_ == MaskScope::Row ? " per row" : " per layer");
}

std::shared_ptr<LinearWeight> MagnitudeCompressor::compress(const std::string& name, const Linear& linear,
                                                            const InputStats&) {
  const at::Tensor w = linear.weight->dense().to(at::kFloat);
  check_pattern_fits(target_, w.size(1), name);
  if (global_) return sparse_result(w.masked_fill(w.abs() <= global_threshold_, 0.0), SparsityTarget::unstructured(0));
  return sparse_result(magnitude_prune(w, target_, scope_), target_);
}

}  // namespace llmpress

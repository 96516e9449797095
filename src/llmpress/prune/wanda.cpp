#include "llmpress/prune/wanda.h"

#include "llmpress/core/error.h"

namespace llmpress {

at::Tensor wanda_prune(const at::Tensor& weight, const at::Tensor& sum_squares, const SparsityTarget& target,
                       MaskScope scope) {
  if (weight.dim() != 2 || sum_squares.dim() != 1 || sum_squares.size(0) != weight.size(1))
    throw Error("wanda: input norms must have one entry per input column of the weight");
  const at::Tensor w = weight.to(at::kFloat);
  const at::Tensor norms = sum_squares.to(w.device(), at::kDouble).clamp_min(0).sqrt();
  const at::Tensor scores = w.abs().to(at::kDouble) * norms.unsqueeze(0);
  return w.masked_fill(select_mask(scores, target, scope), 0.0);
}

WandaCompressor::WandaCompressor(SparsityTarget target, MaskScope scope) : target_(target), scope_(scope) {
  target_.check();
}

std::string WandaCompressor::describe() const {
  if (target_.semi_structured()) return "wanda " + target_.describe();
  return "wanda " + target_.describe() + (scope_ == MaskScope::Row ? " per row" : " per layer");
}

std::shared_ptr<LinearWeight> WandaCompressor::compress(const std::string& name, const Linear& linear,
                                                        const InputStats& stats) {
  if (!stats.sum_squares.defined()) throw Error("wanda: " + name + ": no input norms were collected");
  check_pattern_fits(target_, linear.weight->in_features(), name);
  return sparse_result(wanda_prune(linear.weight->dense(), stats.sum_squares, target_, scope_), target_);
}

}  // namespace llmpress

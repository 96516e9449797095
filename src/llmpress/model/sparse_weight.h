#pragma once
// A pruned linear weight: its values (any kind: dense after pruning, an integer grid or ggml
// blocks after a later quantization stage) and the pruning mask, so that later stages keep the
// zeros (GPTQ only moves kept weights) and exporters can store the matrix compressed.
#include "llmpress/model/linear.h"

namespace llmpress {

class SparseWeight : public LinearWeight {
 public:
  // removed: [out, in] bool, true where the weight was pruned; n:m the pattern it satisfies (0:0 =
  // unstructured). The values should be zero where removed (a format that cannot hold an exact
  // zero, e.g. Q4_K with its block minimum, is the exception: see zeros_exact()).
  SparseWeight(std::shared_ptr<LinearWeight> values, at::Tensor removed, int64_t n = 0, int64_t m = 0);

  at::Tensor forward(const at::Tensor& x) const override { return values_->forward(x); }
  int64_t in_features() const override { return values_->in_features(); }
  int64_t out_features() const override { return values_->out_features(); }
  // Dense values: compressed-tensors' bitmask layout (16-bit kept values + 1 bit per element);
  // quantized values: their own packed size (those formats store the zeros as codes).
  int64_t storage_bits() const override;
  at::Tensor dense() const override { return values_->dense(); }
  std::string kind() const override { return "sparse"; }
  WeightState save() const override;
  PruningMask pruning_mask() const override { return {removed_, n_, m_}; }
  // The values train with the mask fixed: the removed positions stay exactly zero.
  std::vector<TrainableTensor> trainable() const override;

  const std::shared_ptr<LinearWeight>& values() const { return values_; }
  int64_t removed_count() const;
  // Whether every removed weight decodes to exactly 0.
  bool zeros_exact() const;

 private:
  std::shared_ptr<LinearWeight> values_;
  at::Tensor removed_;
  int64_t n_, m_;
};

// A weight loaded from a file whose exact zeros are a pruning mask, as a SparseWeight with its N:M
// pattern (2:4, 4:8) detected, so that later stages keep the zeros. Dense weights: at least 10%
// exact zeros (a trained matrix has next to none) or an N:M pattern. Quantized weights: an N:M
// pattern only, since a low-bit grid rounds many weights to exactly 0 by itself.
// Other weights are returned as they are.
std::shared_ptr<LinearWeight> recognize_pruning(std::shared_ptr<LinearWeight> dense);

// `weight` carrying the pruning mask of `source` when `source` has one (for stages that replace
// the values of a pruned weight and keep its mask).
std::shared_ptr<LinearWeight> keep_pruning_mask(const LinearWeight& source, std::shared_ptr<LinearWeight> weight);

}  // namespace llmpress

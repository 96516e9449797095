#pragma once
// A linear weight stored as a Tucker decomposition of the matrix reshaped into a 3-way tensor,
// e.g. a per-head attention projection [heads, head_dim, hidden]. The stored size is the core
// plus the factors; the forward pass multiplies by the reconstructed matrix, which is kept (so
// this kind saves storage and export size, not runtime memory or time).
#include "llmpress/lowrank/tucker.h"
#include "llmpress/model/linear.h"

namespace llmpress {

class TuckerWeight : public LinearWeight {
 public:
  // `decomposition` of W.reshape(tensor shape); out x in is the matrix shape.
  TuckerWeight(TuckerDecomposition decomposition, int64_t out, int64_t in, const at::Device& device);
  at::Tensor forward(const at::Tensor& x) const override { return at::linear(x, dense_); }
  int64_t in_features() const override { return dense_.size(1); }
  int64_t out_features() const override { return dense_.size(0); }
  int64_t parameter_count() const override { return decomposition_.parameter_count(); }
  int64_t storage_bits() const override { return parameter_count() * 16; }  // fp16, like the other kinds
  at::Tensor dense() const override { return dense_; }
  std::string kind() const override { return "tucker"; }
  WeightState save() const override;
  const TuckerDecomposition& decomposition() const { return decomposition_; }

 private:
  TuckerDecomposition decomposition_;
  at::Tensor dense_;  // [out, in] float32
};

}  // namespace llmpress

#pragma once
// A linear weight stored as two factors, W = U V with U [out, r] and V [r, in]: the forward pass is
// two matrix products, x V^T then (x V^T) U^T, costing r (in + out) multiply-adds per token
// instead of in * out. Each factor is itself a LinearWeight, so a factor may be quantized.
#include <map>
#include <memory>

#include "llmpress/model/linear.h"

namespace llmpress {

class LowRankWeight : public LinearWeight {
 public:
  // u [out, r], v [r, in], dense factors in any float dtype.
  LowRankWeight(at::Tensor u, at::Tensor v);
  // u maps r -> out, v maps in -> r (e.g. QuantizedWeight factors).
  LowRankWeight(std::shared_ptr<LinearWeight> u, std::shared_ptr<LinearWeight> v);

  at::Tensor forward(const at::Tensor& x) const override;
  int64_t in_features() const override { return v_->in_features(); }
  int64_t out_features() const override { return u_->out_features(); }
  int64_t rank() const { return v_->out_features(); }
  int64_t parameter_count() const override { return rank() * (in_features() + out_features()); }
  // Both factors as stored: a dense factor at 16 bits per value (what an fp16/bf16 checkpoint
  // holds, the convention of every size report), a quantized one at its exact packed size.
  int64_t storage_bits() const override;
  at::Tensor dense() const override;  // U V, float32
  std::string kind() const override { return "lowrank"; }
  std::vector<TrainableTensor> trainable() const override;  // both factors: "_u" and "_v"

  const std::shared_ptr<LinearWeight>& u() const { return u_; }
  const std::shared_ptr<LinearWeight>& v() const { return v_; }

  WeightState save() const override;  // the factors as parts "u" and "v", each of any kind

 private:
  std::shared_ptr<LinearWeight> u_, v_;
};

// Parameters of a rank-r factorization of an [out, in] matrix, and whether it is smaller than the
// matrix itself (a layer whose factorized form is not smaller stays dense).
inline int64_t factorized_parameters(int64_t out, int64_t in, int64_t rank) { return rank * (out + in); }
inline bool factorization_saves(int64_t out, int64_t in, int64_t rank) {
  return rank > 0 && factorized_parameters(out, in, rank) < out * in;
}

}  // namespace llmpress

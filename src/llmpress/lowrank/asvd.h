#pragma once
// ASVD (Yuan et al. 2023, activation-aware SVD): input channel j is scaled by mean|x_j|^alpha
// before the SVD, so that channels carrying large activations are approximated more accurately;
// the inverse scale is folded back into the second factor: W = (W S) S^-1, S = diag(scale).
#include "llmpress/lowrank/matrix_factorizer.h"

namespace llmpress {

class AsvdFactorizer : public MatrixFactorizer {
 public:
  explicit AsvdFactorizer(double alpha = 0.5) : alpha_(alpha) {}
  std::string describe() const override;
  StatsRequest needs() const override {
    StatsRequest request;
    request.input_norms = true;
    return request;
  }
  MatrixDecomposition decompose(const std::string& name, const at::Tensor& weight,
                                const InputStats& stats) const override;

 private:
  double alpha_;
};

}  // namespace llmpress

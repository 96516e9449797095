#pragma once
// SVD-LLM (Wang et al. 2024), truncation-aware data whitening: with H = mean x x^T = L L^T
// (Cholesky), W L = U diag(s) V^T and W_r = U_r diag(s_r) V_r^T L^-1. Because ||(W - W_r) X||^2 =
// tokens * ||(W - W_r) L||_F^2 = tokens * sum_{i >= r} s_i^2, discarding a singular value costs
// exactly its square in output error, and truncation is optimal for that error.
#include "llmpress/lowrank/matrix_factorizer.h"

namespace llmpress {

struct SvdLlmOptions {
  // When H is not positive definite (rank-deficient inputs): this fraction of the mean diagonal is
  // added to the diagonal, growing x10 up to max_damp_increases times. 0 tries H itself first.
  double percdamp = 0.0;
  double first_damp = 1e-6;   // the first non-zero dampening (fraction of the mean diagonal)
  int max_damp_increases = 8;
};

class SvdLlmFactorizer : public MatrixFactorizer {
 public:
  explicit SvdLlmFactorizer(SvdLlmOptions options = {}) : options_(options) {}
  std::string describe() const override;
  StatsRequest needs() const override {
    StatsRequest request;
    request.hessian = true;
    return request;
  }
  MatrixDecomposition decompose(const std::string& name, const at::Tensor& weight,
                                const InputStats& stats) const override;

 private:
  SvdLlmOptions options_;
};

}  // namespace llmpress

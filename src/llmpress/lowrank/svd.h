#pragma once
// Plain truncated SVD (Eckart-Young): the best rank-r approximation in ||W - W_r||_F, blind to
// the inputs the layer sees.
#include "llmpress/lowrank/matrix_factorizer.h"

namespace llmpress {

class SvdFactorizer : public MatrixFactorizer {
 public:
  std::string describe() const override { return "svd"; }
  StatsRequest needs() const override { return {}; }
  MatrixDecomposition decompose(const std::string& name, const at::Tensor& weight,
                                const InputStats& stats) const override;
};

}  // namespace llmpress

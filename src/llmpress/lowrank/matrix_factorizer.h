#pragma once
// Truncated factorizations of a linear layer's weight that differ only in the transform applied
// before the SVD: plain SVD (none), ASVD (input-channel scaling), SVD-LLM (Cholesky whitening).
// Each one writes W T = U diag(s) V^T and keeps R = V^T T^-1, so that W = U diag(s) R exactly and
// dropping component i removes s_i u_i r_i^T. One algorithm per file (svd.cpp, asvd.cpp,
// svd_llm.cpp); rank choice and factor storage live in LowRankCompressor.
#include <ATen/ATen.h>

#include <string>
#include <utility>

#include "llmpress/calib/observers.h"

namespace llmpress {

struct MatrixDecomposition {
  at::Tensor u;     // [out, k] float64, orthonormal columns
  at::Tensor s;     // [k] float64, descending
  at::Tensor rows;  // [k, in] float64: V^T T^-1
  double damp = 0;  // SVD-LLM: dampening added to the Hessian's diagonal before whitening

  int64_t components() const { return s.size(0); }
  // Rank-r factors split evenly: U_r diag(sqrt s_r) [out, r] and diag(sqrt s_r) R_r [r, in].
  std::pair<at::Tensor, at::Tensor> factors(int64_t rank) const;
  // Output error of each component, s_i^2 r_i H r_i^T for H = mean x x^T ([k] float64): dropping
  // components i >= r costs tokens * sum_{i >= r} of these in ||(W - W_r) X||^2, because the u_i
  // are orthonormal. For SVD-LLM (r_i H r_i^T = 1 without dampening) this is s_i^2.
  at::Tensor component_errors(const at::Tensor& hessian) const;
};

class MatrixFactorizer {
 public:
  virtual ~MatrixFactorizer() = default;
  virtual std::string describe() const = 0;
  virtual StatsRequest needs() const = 0;
  // weight [out, in] (any float dtype and device); computed in float64 on that device.
  virtual MatrixDecomposition decompose(const std::string& name, const at::Tensor& weight,
                                        const InputStats& stats) const = 0;
};

// Thin SVD of a float64 matrix as U, s, V^T (shared by the three methods).
MatrixDecomposition svd_of(const at::Tensor& matrix);

}  // namespace llmpress

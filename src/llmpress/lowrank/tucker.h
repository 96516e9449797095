#pragma once
// Tucker decomposition of a 3- or 4-way tensor: X ~ G x_1 U_1 x_2 U_2 x_3 U_3 (x_4 U_4) with
// orthonormal factors U_n [I_n, r_n] and a core G [r_1, ..., r_N]. HOSVD (leading left singular
// vectors of each unfolding) initializes, HOOI (higher-order orthogonal iteration) refines: each
// step makes ||G|| as large as possible for one factor with the others fixed, and since
// ||X - X^||^2 = ||X||^2 - ||G||^2 the error never increases (De Lathauwer et al. 2000).
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace llmpress {

struct TuckerOptions {
  std::vector<int64_t> ranks;  // one per mode, 1 <= r_n <= I_n
  int64_t max_iterations = 50;
  double tolerance = 1e-12;    // stop when the relative error improves by less than this
};

struct TuckerDecomposition {
  at::Tensor core;                  // [r_1, ..., r_N] float64
  std::vector<at::Tensor> factors;  // per mode [I_n, r_n] float64, orthonormal columns
  std::vector<double> errors;       // ||X - X^|| / ||X||: [0] after HOSVD, then after each HOOI sweep
  int64_t iterations = 0;           // HOOI sweeps

  at::Tensor reconstruct() const;   // float64
  int64_t parameter_count() const;
};

// HOSVD only (errors has one entry, iterations 0).
TuckerDecomposition tucker_hosvd(const at::Tensor& tensor, const std::vector<int64_t>& ranks);
// HOSVD, then HOOI sweeps.
TuckerDecomposition tucker_hooi(const at::Tensor& tensor, const TuckerOptions& options);

}  // namespace llmpress

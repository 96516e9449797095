#pragma once
// CP (CANDECOMP/PARAFAC) decomposition of a 3- or 4-way tensor by alternating least squares:
// X ~ sum_r w_r a_r o b_r o c_r (o d_r). Each step solves one factor exactly by least squares with
// the others fixed, so the fit error never increases (Kolda & Bader 2009, section 3.4).
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace llmpress {

struct CpOptions {
  int64_t rank = 1;
  int64_t max_iterations = 500;
  // Stops when the relative error improves by less than this between two sweeps.
  double tolerance = 1e-10;
  uint64_t seed = 0;  // the random initial factors
};

struct CpDecomposition {
  at::Tensor weights;               // [rank] float64
  std::vector<at::Tensor> factors;  // per mode [I_n, rank] float64, unit-norm columns
  std::vector<double> errors;       // ||X - X^|| / ||X|| after each sweep
  int64_t iterations = 0;

  at::Tensor reconstruct() const;   // float64
  int64_t parameter_count() const;
};

// tensor: 3-way or 4-way, any float dtype; computed in float64 on its device.
CpDecomposition cp_als(const at::Tensor& tensor, const CpOptions& options);

}  // namespace llmpress

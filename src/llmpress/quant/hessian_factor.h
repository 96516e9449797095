#pragma once
// The inverse-Hessian factor that GPTQ and SparseGPT share, with their dampening and failure handling.
#include <ATen/ATen.h>

#include <string>

namespace llmpress {

struct InverseHessianFactor {
  at::Tensor upper;  // Cholesky factor U of (H + damp I)^-1 = U^T U, upper triangular, float64
  double damp = 0;   // the dampening finally used (absolute)
  int increases = 0;
  bool ok = false;   // false: no dampening up to the limit made H factorizable; `upper` is undefined
};

// Row k of U, scaled by 1/U[k,k], is how an error in column k is best compensated by the later
// columns (the update rule of both algorithms). Dampening starts at percdamp x the mean diagonal
// and is multiplied by 10 after each failure, up to max_increases times, with a warning naming
// `name` on stderr each time.
InverseHessianFactor inverse_hessian_factor(const at::Tensor& h, double percdamp, int max_increases,
                                            const std::string& name);

}  // namespace llmpress

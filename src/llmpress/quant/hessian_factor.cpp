#include "llmpress/quant/hessian_factor.h"

#include "llmpress/core/log.h"

#include <cstdio>

namespace llmpress {

InverseHessianFactor inverse_hessian_factor(const at::Tensor& h, double percdamp, int max_increases,
                                            const std::string& name) {
  const double mean_diag = h.diagonal().mean().item<double>();
  InverseHessianFactor f;
  // A non-positive mean (only possible for a broken Hessian) still gets some dampening to grow.
  f.damp = percdamp * (mean_diag > 0 ? mean_diag : 1.0);
  if (f.damp <= 0) f.damp = 1e-8;
  const at::Tensor eye = at::eye(h.size(0), h.options());
  for (;; ++f.increases) {
    auto [lower, info] = at::linalg_cholesky_ex(h + f.damp * eye);
    if (info.item<int64_t>() == 0) {
      auto [upper, info2] = at::linalg_cholesky_ex(at::cholesky_inverse(lower), /*upper=*/true);
      if (info2.item<int64_t>() == 0 && at::isfinite(upper).all().item<bool>()) {
        f.upper = upper;
        f.ok = true;
        return f;
      }
    }
    if (f.increases == max_increases) return f;
    log_warning(strprintf("%s: Hessian not positive definite with dampening %.3g; trying %.3g",
                 name.c_str(), f.damp, f.damp * 10));
    f.damp *= 10;
  }
}

}  // namespace llmpress

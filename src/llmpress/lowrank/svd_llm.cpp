#include "llmpress/lowrank/svd_llm.h"

#include <cmath>
#include <cstdio>

#include "llmpress/core/error.h"
#include "llmpress/core/log.h"

namespace llmpress {

std::string SvdLlmFactorizer::describe() const {
  char text[64];
  std::snprintf(text, sizeof text, "svd-llm damp %g", options_.percdamp);
  return text;
}

MatrixDecomposition SvdLlmFactorizer::decompose(const std::string& name, const at::Tensor& weight,
                                                const InputStats& stats) const {
  if (!stats.hessian.defined()) throw Error("svd-llm: " + name + ": no Hessian was collected");
  const at::Tensor w = weight.to(at::kDouble);
  const at::Tensor h = stats.hessian.to(w.device(), at::kDouble);
  if (h.dim() != 2 || h.size(0) != w.size(1) || h.size(1) != w.size(1))
    throw Error("svd-llm: " + name + ": the Hessian does not match the weight");
  if (!at::isfinite(h).all().item<bool>()) throw Error("svd-llm: " + name + ": the Hessian contains NaN or Inf");

  const double mean_diag = h.diagonal().mean().item<double>();
  const double unit = mean_diag > 0 ? mean_diag : 1.0;
  const at::Tensor eye = at::eye(h.size(0), h.options());
  double damp = options_.percdamp * unit;
  at::Tensor lower;
  for (int increases = 0;; ++increases) {
    auto [l, info] = at::linalg_cholesky_ex(damp > 0 ? h + damp * eye : h);
    // A factor with a tiny pivot is useless too: L^-1 would amplify rounding noise into A.
    if (info.item<int64_t>() == 0 && l.diagonal().min().item<double>() > 1e-10 * std::sqrt(unit)) {
      lower = l;
      break;
    }
    if (increases == options_.max_damp_increases)
      throw Error("svd-llm: " + name + ": the Hessian is not positive definite even with dampening " +
                  std::to_string(damp) + " (calibration data too small or degenerate: use more --nsamples)");
    const double next = damp > 0 ? damp * 10 : options_.first_damp * unit;
    log_warning(strprintf("%s: Hessian not positive definite with dampening %.3g; trying %.3g",
                 name.c_str(), damp, next));
    damp = next;
  }
  MatrixDecomposition d = svd_of(at::matmul(w, lower));
  // R = V^T L^-1, i.e. R^T = L^-T V: one triangular solve instead of an explicit inverse.
  d.rows = at::linalg_solve_triangular(lower.transpose(0, 1), d.rows.transpose(0, 1), /*upper=*/true)
               .transpose(0, 1)
               .contiguous();
  d.damp = damp;
  return d;
}

}  // namespace llmpress

#include "llmpress/lowrank/asvd.h"

#include <cstdio>

#include "llmpress/core/error.h"

namespace llmpress {

std::string AsvdFactorizer::describe() const {
  char text[64];
  std::snprintf(text, sizeof text, "asvd alpha %g", alpha_);
  return text;
}

MatrixDecomposition AsvdFactorizer::decompose(const std::string& name, const at::Tensor& weight,
                                              const InputStats& stats) const {
  if (!stats.mean_abs.defined()) throw Error("asvd: " + name + ": no input activation statistics were collected");
  const at::Tensor w = weight.to(at::kDouble);
  if (stats.mean_abs.numel() != w.size(1)) throw Error("asvd: " + name + ": activation statistics do not match the weight");
  at::Tensor scale = stats.mean_abs.to(w.device(), at::kDouble).pow(alpha_);
  if (!at::isfinite(scale).all().item<bool>()) throw Error("asvd: " + name + ": activation statistics contain NaN or Inf");
  // Channels that were (almost) never active would get a zero scale and an infinite inverse.
  const double largest = scale.max().item<double>();
  scale = scale.clamp_min(largest > 0 ? largest * 1e-6 : 1.0);
  MatrixDecomposition d = svd_of(w * scale.unsqueeze(0));
  d.rows = d.rows / scale.unsqueeze(0);
  return d;
}

}  // namespace llmpress

#include "llmpress/lowrank/cp.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <string>

#include "llmpress/core/error.h"

namespace llmpress {

namespace {

const char kIndex[] = "ijkl";

// sum_r w_r prod_n A_n[i_n, r] as one einsum ("r,ir,jr,kr->ijk").
at::Tensor cp_tensor(const at::Tensor& weights, const std::vector<at::Tensor>& factors) {
  std::string spec = "r";
  std::string out;
  for (size_t n = 0; n < factors.size(); ++n) {
    spec += std::string(",") + kIndex[n] + "r";
    out += kIndex[n];
  }
  std::vector<at::Tensor> operands = {weights};
  operands.insert(operands.end(), factors.begin(), factors.end());
  return at::einsum(spec + "->" + out, operands);
}

// The matricized tensor times the Khatri-Rao product of every factor but `mode` (MTTKRP):
// M[i_n, r] = sum over the other indices of X[i...] prod_{k != n} A_k[i_k, r].
at::Tensor mttkrp(const at::Tensor& x, const std::vector<at::Tensor>& factors, size_t mode) {
  std::string spec(kIndex, factors.size());
  std::vector<at::Tensor> operands = {x};
  for (size_t k = 0; k < factors.size(); ++k) {
    if (k == mode) continue;
    spec += std::string(",") + kIndex[k] + "r";
    operands.push_back(factors[k]);
  }
  return at::einsum(spec + "->" + kIndex[mode] + "r", operands);
}

}  // namespace

at::Tensor CpDecomposition::reconstruct() const { return cp_tensor(weights, factors); }

int64_t CpDecomposition::parameter_count() const {
  int64_t count = weights.numel();
  for (const at::Tensor& f : factors) count += f.numel();
  return count;
}

CpDecomposition cp_als(const at::Tensor& tensor, const CpOptions& options) {
  if (tensor.dim() != 3 && tensor.dim() != 4) throw Error("cp: only 3-way and 4-way tensors are supported");
  if (options.rank < 1) throw Error("cp: the rank must be >= 1");
  if (options.max_iterations < 1) throw Error("cp: max_iterations must be >= 1");
  const at::Tensor x = tensor.to(at::kDouble);
  if (!at::isfinite(x).all().item<bool>()) throw Error("cp: the tensor contains NaN or Inf");
  const double norm = x.norm().item<double>();
  const size_t modes = size_t(x.dim());
  auto generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);

  CpDecomposition d;
  for (size_t n = 0; n < modes; ++n)
    d.factors.push_back(at::randn({x.size(int64_t(n)), options.rank}, generator, at::kDouble).to(x.device()));
  d.weights = at::ones({options.rank}, x.options());
  for (int64_t it = 0; it < options.max_iterations; ++it) {
    for (size_t n = 0; n < modes; ++n) {
      // Normal equations of the least-squares problem for factor n: the Gram matrix of the
      // Khatri-Rao product is the Hadamard product of the other factors' Gram matrices.
      at::Tensor gram = at::ones({options.rank, options.rank}, x.options());
      for (size_t k = 0; k < modes; ++k)
        if (k != n) gram = gram * at::matmul(d.factors[k].transpose(0, 1), d.factors[k]);
      const at::Tensor solved = at::matmul(mttkrp(x, d.factors, n), at::linalg_pinv(gram, 1e-12, /*hermitian=*/true));
      const at::Tensor column_norms = solved.pow(2).sum(0).sqrt().clamp_min(1e-300);
      d.factors[n] = solved / column_norms;
      d.weights = column_norms;
    }
    d.iterations = it + 1;
    const double error = norm > 0 ? (x - d.reconstruct()).norm().item<double>() / norm : 0.0;
    d.errors.push_back(error);
    if (d.errors.size() >= 2 && d.errors[d.errors.size() - 2] - error < options.tolerance) break;
  }
  return d;
}

}  // namespace llmpress

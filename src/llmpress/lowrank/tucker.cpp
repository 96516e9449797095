#include "llmpress/lowrank/tucker.h"

#include <cmath>

#include "llmpress/core/error.h"
#include "llmpress/lowrank/tensor_ops.h"

namespace llmpress {

namespace {

at::Tensor leading_left_singular_vectors(const at::Tensor& matrix, int64_t count) {
  // The eigenvectors of M M^T are M's left singular vectors; M is short and wide here, so this
  // avoids an SVD of the wide matrix.
  const auto [values, vectors] = at::linalg_eigh(at::matmul(matrix, matrix.transpose(0, 1)));
  return vectors.flip({1}).narrow(1, 0, count).contiguous();  // eigh sorts ascending
}

at::Tensor project_all_but(const at::Tensor& x, const std::vector<at::Tensor>& factors, int64_t skip) {
  at::Tensor y = x;
  for (size_t k = 0; k < factors.size(); ++k)
    if (int64_t(k) != skip) y = mode_product(y, factors[k].transpose(0, 1), int64_t(k));
  return y;
}

double relative_error(double norm, const at::Tensor& core) {
  if (norm <= 0) return 0.0;
  // ||X - X^||^2 = ||X||^2 - ||G||^2 for orthonormal factors; clamped against rounding.
  return std::sqrt(std::max(0.0, norm * norm - core.pow(2).sum().item<double>())) / norm;
}

at::Tensor checked_input(const at::Tensor& tensor, const std::vector<int64_t>& ranks) {
  if (tensor.dim() != 3 && tensor.dim() != 4) throw Error("tucker: only 3-way and 4-way tensors are supported");
  if (int64_t(ranks.size()) != tensor.dim()) throw Error("tucker: give one rank per mode");
  for (size_t n = 0; n < ranks.size(); ++n)
    if (ranks[n] < 1 || ranks[n] > tensor.size(int64_t(n)))
      throw Error("tucker: rank " + std::to_string(ranks[n]) + " of mode " + std::to_string(n) + " is outside 1.." +
                  std::to_string(tensor.size(int64_t(n))));
  const at::Tensor x = tensor.to(at::kDouble);
  if (!at::isfinite(x).all().item<bool>()) throw Error("tucker: the tensor contains NaN or Inf");
  return x;
}

}  // namespace

at::Tensor TuckerDecomposition::reconstruct() const {
  at::Tensor x = core;
  for (size_t n = 0; n < factors.size(); ++n) x = mode_product(x, factors[n], int64_t(n));
  return x;
}

int64_t TuckerDecomposition::parameter_count() const {
  int64_t count = core.numel();
  for (const at::Tensor& f : factors) count += f.numel();
  return count;
}

TuckerDecomposition tucker_hosvd(const at::Tensor& tensor, const std::vector<int64_t>& ranks) {
  const at::Tensor x = checked_input(tensor, ranks);
  TuckerDecomposition d;
  for (int64_t n = 0; n < x.dim(); ++n) d.factors.push_back(leading_left_singular_vectors(unfold_mode(x, n), ranks[size_t(n)]));
  d.core = project_all_but(x, d.factors, -1);
  d.errors.push_back(relative_error(x.norm().item<double>(), d.core));
  return d;
}

TuckerDecomposition tucker_hooi(const at::Tensor& tensor, const TuckerOptions& options) {
  TuckerDecomposition d = tucker_hosvd(tensor, options.ranks);
  const at::Tensor x = tensor.to(at::kDouble);
  const double norm = x.norm().item<double>();
  for (int64_t it = 0; it < options.max_iterations; ++it) {
    for (int64_t n = 0; n < x.dim(); ++n)
      d.factors[size_t(n)] =
          leading_left_singular_vectors(unfold_mode(project_all_but(x, d.factors, n), n), options.ranks[size_t(n)]);
    d.core = project_all_but(x, d.factors, -1);
    d.iterations = it + 1;
    d.errors.push_back(relative_error(norm, d.core));
    if (d.errors[d.errors.size() - 2] - d.errors.back() < options.tolerance) break;
  }
  return d;
}

}  // namespace llmpress

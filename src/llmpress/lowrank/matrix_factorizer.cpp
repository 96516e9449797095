#include "llmpress/lowrank/matrix_factorizer.h"

#include "llmpress/core/error.h"

namespace llmpress {

MatrixDecomposition svd_of(const at::Tensor& matrix) {
  auto [u, s, vh] = at::linalg_svd(matrix, /*full_matrices=*/false);
  MatrixDecomposition d;
  d.u = u;
  d.s = s;
  d.rows = vh;
  return d;
}

std::pair<at::Tensor, at::Tensor> MatrixDecomposition::factors(int64_t rank) const {
  if (rank < 1 || rank > components())
    throw Error("low-rank factors: rank " + std::to_string(rank) + " outside 1.." + std::to_string(components()));
  const at::Tensor root = s.narrow(0, 0, rank).sqrt();
  return {u.narrow(1, 0, rank) * root.unsqueeze(0), root.unsqueeze(1) * rows.narrow(0, 0, rank)};
}

at::Tensor MatrixDecomposition::component_errors(const at::Tensor& hessian) const {
  const at::Tensor h = hessian.to(rows.device(), at::kDouble);
  const at::Tensor energy = (at::matmul(rows, h) * rows).sum(1);  // r_i H r_i^T
  return s.pow(2) * energy;
}

}  // namespace llmpress

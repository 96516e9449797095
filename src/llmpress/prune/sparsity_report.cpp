#include "llmpress/prune/sparsity_report.h"

#include "llmpress/core/error.h"

namespace llmpress {

SparsityStats& SparsityStats::operator+=(const SparsityStats& other) {
  zeros += other.zeros;
  total += other.total;
  if (n == 0 && m == 0) {
    n = other.n;
    m = other.m;
  }
  groups += other.groups;
  compliant_groups += other.compliant_groups;
  return *this;
}

SparsityStats measure_sparsity(const at::Tensor& weight, int64_t n, int64_t m) {
  if (weight.dim() != 2) throw Error("measure_sparsity: weight must be [out, in]");
  SparsityStats stats;
  const at::Tensor zero = weight == 0;
  stats.zeros = zero.sum().item<int64_t>();
  stats.total = weight.numel();
  stats.n = n;
  stats.m = m;
  if (m > 0 && weight.size(1) % m == 0) {
    const at::Tensor nonzeros = (~zero).reshape({weight.size(0), weight.size(1) / m, m}).sum(-1);
    stats.groups = nonzeros.numel();
    stats.compliant_groups = (nonzeros <= n).sum().item<int64_t>();
  }
  return stats;
}

std::string detect_nm_pattern(const at::Tensor& weight) {
  if (weight.dim() != 2) return "";
  for (const auto& [n, m] : {std::pair<int64_t, int64_t>{2, 4}, {4, 8}})
    if (measure_sparsity(weight, n, m).compliant()) return std::to_string(n) + ":" + std::to_string(m);
  return "";
}

}  // namespace llmpress

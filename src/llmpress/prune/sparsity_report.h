#pragma once
// Measuring what a pruned weight actually holds: its zeros, and how many of its groups of M
// consecutive input weights satisfy an N:M pattern (the end-of-run summary and `llmpress info`).
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

namespace llmpress {

struct SparsityStats {
  int64_t zeros = 0, total = 0;
  // N:M compliance: groups of m consecutive input weights in a row with at most n nonzeros.
  // groups = 0 when no pattern was checked or the row length is not a multiple of m.
  int64_t n = 0, m = 0, groups = 0, compliant_groups = 0;

  double sparsity() const { return total > 0 ? double(zeros) / double(total) : 0.0; }
  bool compliant() const { return groups > 0 && compliant_groups == groups; }
  SparsityStats& operator+=(const SparsityStats& other);
};

// weight [out, in]; n:m = 0:0 checks no pattern.
SparsityStats measure_sparsity(const at::Tensor& weight, int64_t n = 0, int64_t m = 0);

// "2:4" or "4:8" when every group of the weight complies (2:4 checked first), "" otherwise.
std::string detect_nm_pattern(const at::Tensor& weight);

}  // namespace llmpress

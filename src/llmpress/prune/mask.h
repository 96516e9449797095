#pragma once
// Choosing which weights of a layer to remove, given a score per weight (higher = more important).
// Every pruning method computes its own scores and hands them to these helpers, so the exact
// sparsity guarantees live in one place.
#include <ATen/ATen.h>

#include <memory>
#include <string>

#include "llmpress/model/linear.h"

namespace llmpress {

// What to remove: a fraction of the weights, or an N:M pattern (at most N nonzeros in every group
// of M consecutive input weights of a row; "2:4" keeps 2 of 4).
struct SparsityTarget {
  double sparsity = 0.5;  // unstructured: fraction removed, in [0, 1)
  int64_t n = 0, m = 0;   // N:M when m > 0

  bool semi_structured() const { return m > 0; }
  double fraction() const { return semi_structured() ? 1.0 - double(n) / double(m) : sparsity; }
  void check() const;             // throws Error for a sparsity outside [0, 1) or a bad pattern
  std::string describe() const;   // "50%" or "2:4"
  // "2:4" -> {n 2, m 4}; throws Error naming the text otherwise.
  static SparsityTarget pattern(const std::string& text);
  static SparsityTarget unstructured(double sparsity);
};

// Where an unstructured fraction is counted: in each output row, or over the whole matrix.
enum class MaskScope { Row, Layer };

// Throws Error naming the layer when an N:M target cannot apply to `cols` input columns.
void check_pattern_fits(const SparsityTarget& target, int64_t cols, const std::string& name);

// Number of weights removed out of `count` at `sparsity` (the reference codes' int(count * s)).
int64_t pruned_count(int64_t count, double sparsity);

// Boolean masks, true = removed; scores [rows, cols]. Ties are broken by position (stable).
// Exactly pruned_count(cols or rows*cols, sparsity) per row or per matrix.
at::Tensor lowest_mask(const at::Tensor& scores, double sparsity, MaskScope scope);
// Exactly m - n per group of m consecutive columns; cols must be a multiple of m.
at::Tensor nm_mask(const at::Tensor& scores, int64_t n, int64_t m);
// One of the two, as `target` says (scope only matters for an unstructured target).
at::Tensor select_mask(const at::Tensor& scores, const SparsityTarget& target, MaskScope scope);

// A pruned matrix (removed weights exactly 0) as a SparseWeight whose mask is its zeros, with the
// target's N:M pattern recorded.
std::shared_ptr<LinearWeight> sparse_result(const at::Tensor& pruned, const SparsityTarget& target);

}  // namespace llmpress

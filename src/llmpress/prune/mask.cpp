#include "llmpress/prune/mask.h"

#include <cmath>
#include <cstdio>

#include "llmpress/core/error.h"
#include "llmpress/model/sparse_weight.h"

namespace llmpress {

void SparsityTarget::check() const {
  if (semi_structured()) {
    if (n < 1 || m < 2 || n >= m || m > 64)
      throw Error("sparsity pattern " + std::to_string(n) + ":" + std::to_string(m) +
                  ": need 1 <= N < M <= 64 (e.g. 2:4 or 4:8)");
  } else if (!(sparsity >= 0.0 && sparsity < 1.0)) {
    throw Error("sparsity " + std::to_string(sparsity) + ": need a fraction in [0, 1), e.g. 0.5");
  }
}

std::string SparsityTarget::describe() const {
  if (semi_structured()) return std::to_string(n) + ":" + std::to_string(m);
  char text[32];
  std::snprintf(text, sizeof text, "%g%%", sparsity * 100);
  return text;
}

SparsityTarget SparsityTarget::pattern(const std::string& text) {
  SparsityTarget t;
  const size_t colon = text.find(':');
  try {
    size_t used_n = 0, used_m = 0;
    if (colon == std::string::npos) throw std::invalid_argument("no colon");
    t.n = std::stoll(text.substr(0, colon), &used_n);
    t.m = std::stoll(text.substr(colon + 1), &used_m);
    if (used_n != colon || used_m != text.size() - colon - 1) throw std::invalid_argument("trailing text");
  } catch (const std::exception&) {
    throw Error("--pattern '" + text + "': expected N:M such as 2:4 or 4:8");
  }
  t.check();
  return t;
}

SparsityTarget SparsityTarget::unstructured(double sparsity) {
  SparsityTarget t;
  t.sparsity = sparsity;
  t.check();
  return t;
}

void check_pattern_fits(const SparsityTarget& target, int64_t cols, const std::string& name) {
  if (target.semi_structured() && cols % target.m != 0)
    throw Error(name + ": a " + target.describe() + " pattern needs an input size divisible by " +
                std::to_string(target.m) + ", not " + std::to_string(cols) +
                "; keep this layer dense with --skip (e.g. --skip '" + name.substr(name.rfind('.') + 1) + "')");
}

int64_t pruned_count(int64_t count, double sparsity) {
  // The small epsilon keeps 0.7 * 10 at 7 despite 0.7 not being exact in binary.
  return int64_t(std::floor(double(count) * sparsity + 1e-9));
}

namespace {

// Marks the k lowest scores along the last dimension of a [..., len] tensor.
at::Tensor lowest_k(const at::Tensor& scores, int64_t k) {
  at::Tensor mask = at::zeros(scores.sizes(), scores.options().dtype(at::kBool));
  if (k <= 0) return mask;
  const at::Tensor order = std::get<1>(at::sort(scores, /*stable=*/true, -1, /*descending=*/false));
  mask.scatter_(-1, order.narrow(-1, 0, k), true);
  return mask;
}

void check_scores(const at::Tensor& scores) {
  if (scores.dim() != 2) throw Error("pruning scores must be a [rows, cols] matrix");
  if (!at::isfinite(scores).all().item<bool>()) throw Error("pruning scores contain NaN or Inf");
}

}  // namespace

at::Tensor lowest_mask(const at::Tensor& scores, double sparsity, MaskScope scope) {
  check_scores(scores);
  SparsityTarget::unstructured(sparsity);
  if (scope == MaskScope::Row) return lowest_k(scores, pruned_count(scores.size(1), sparsity));
  return lowest_k(scores.reshape({-1}), pruned_count(scores.numel(), sparsity)).view(scores.sizes());
}

at::Tensor nm_mask(const at::Tensor& scores, int64_t n, int64_t m) {
  check_scores(scores);
  SparsityTarget target;
  target.n = n;
  target.m = m;
  target.check();
  if (scores.size(1) % m != 0)
    throw Error("a " + target.describe() + " pattern needs input sizes divisible by " + std::to_string(m) + "; got " +
                std::to_string(scores.size(1)) + " (skip this layer with --skip)");
  const at::Tensor groups = scores.reshape({scores.size(0), scores.size(1) / m, m});
  return lowest_k(groups, m - n).view(scores.sizes());
}

at::Tensor select_mask(const at::Tensor& scores, const SparsityTarget& target, MaskScope scope) {
  return target.semi_structured() ? nm_mask(scores, target.n, target.m) : lowest_mask(scores, target.sparsity, scope);
}

std::shared_ptr<LinearWeight> sparse_result(const at::Tensor& pruned, const SparsityTarget& target) {
  const at::Tensor removed = pruned == 0;
  return std::make_shared<SparseWeight>(std::make_shared<DenseWeight>(pruned), removed,
                                        target.semi_structured() ? target.n : 0, target.semi_structured() ? target.m : 0);
}

}  // namespace llmpress

// Matrix factorizations of one linear layer: exact reconstruction at full rank, SVD-LLM's
// truncation theorem, the per-component error formula against a naive evaluation, dampening.
#include <gtest/gtest.h>

#include <limits>

#include "llmpress/calib/observers.h"
#include "llmpress/core/error.h"
#include "llmpress/lowrank/asvd.h"
#include "llmpress/lowrank/svd.h"
#include "llmpress/lowrank/svd_llm.h"

namespace llmpress {
namespace {

// Inputs with correlated channels of very different scales, like real activations.
at::Tensor correlated_inputs(int64_t tokens, int64_t in, uint64_t seed) {
  at::manual_seed(seed);
  const at::Tensor mix = at::randn({in, in}, at::kDouble);
  const at::Tensor scales = at::linspace(0.05, 3.0, in, at::kDouble);
  return at::matmul(at::randn({tokens, in}, at::kDouble), mix) * scales;
}

InputStats stats_of(const at::Tensor& x) {
  HessianObserver hessian;
  InputNormObserver norms;
  hessian.observe(x);
  norms.observe(x);
  InputStats stats;
  hessian.finish(stats);
  norms.finish(stats);
  return stats;
}

// ||(W - W') X^T||^2 summed over tokens, directly from the inputs.
double naive_output_error(const at::Tensor& w, const at::Tensor& approx, const at::Tensor& x) {
  return at::matmul(x, (w - approx).transpose(0, 1)).pow(2).sum().item<double>();
}

at::Tensor rebuild(const MatrixDecomposition& d, int64_t rank) {
  const auto [u, v] = d.factors(rank);
  return at::matmul(u, v);
}

TEST(LowRankFactorizers, FullRankReconstructsTheWeight) {
  const at::Tensor x = correlated_inputs(300, 16, 1);
  const InputStats stats = stats_of(x);
  at::manual_seed(2);
  for (const auto& shape : {std::pair<int64_t, int64_t>{24, 16}, {10, 16}}) {
    const at::Tensor w = at::randn({shape.first, shape.second}, at::kFloat);
    const SvdFactorizer svd;
    const AsvdFactorizer asvd(0.5);
    const SvdLlmFactorizer svd_llm;
    for (const MatrixFactorizer* f : std::vector<const MatrixFactorizer*>{&svd, &asvd, &svd_llm}) {
      const MatrixDecomposition d = f->decompose("w", w, stats);
      const int64_t full = std::min(shape.first, shape.second);
      ASSERT_EQ(d.components(), full) << f->describe();
      EXPECT_TRUE(at::allclose(rebuild(d, full), w.to(at::kDouble), 1e-9, 1e-9)) << f->describe();
    }
  }
}

TEST(LowRankFactorizers, SvdLlmOutputErrorIsTheSumOfDiscardedSquaredSingularValues) {
  const int64_t tokens = 400, in = 20, out = 28;
  const at::Tensor x = correlated_inputs(tokens, in, 3);
  const InputStats stats = stats_of(x);
  at::manual_seed(4);
  const at::Tensor w = at::randn({out, in}, at::kDouble);
  const MatrixDecomposition d = SvdLlmFactorizer().decompose("w", w, stats);
  EXPECT_EQ(d.damp, 0.0);
  // The singular values of W L, computed here from an independent Cholesky of mean x x^T.
  const at::Tensor l = at::linalg_cholesky(at::matmul(x.transpose(0, 1), x) / double(tokens));
  const at::Tensor s = at::linalg_svdvals(at::matmul(w, l));
  for (int64_t r : {1, 4, 10, 19}) {
    const double predicted = double(tokens) * s.narrow(0, r, in - r).pow(2).sum().item<double>();
    const double measured = naive_output_error(w, rebuild(d, r), x);
    EXPECT_NEAR(measured, predicted, 1e-8 * predicted) << "rank " << r;
  }
}

TEST(LowRankFactorizers, ComponentErrorsMatchNaiveOutputErrorForEveryMethod) {
  const int64_t tokens = 300, in = 16, out = 12;
  const at::Tensor x = correlated_inputs(tokens, in, 5);
  const InputStats stats = stats_of(x);
  at::manual_seed(6);
  const at::Tensor w = at::randn({out, in}, at::kDouble);
  const SvdFactorizer svd;
  const AsvdFactorizer asvd(0.7);
  const SvdLlmFactorizer svd_llm;
  for (const MatrixFactorizer* f : std::vector<const MatrixFactorizer*>{&svd, &asvd, &svd_llm}) {
    const MatrixDecomposition d = f->decompose("w", w, stats);
    const at::Tensor errors = d.component_errors(stats.hessian);
    for (int64_t r : {2, 7}) {
      const double predicted = double(tokens) * errors.narrow(0, r, d.components() - r).sum().item<double>();
      EXPECT_NEAR(naive_output_error(w, rebuild(d, r), x), predicted, 1e-8 * predicted) << f->describe() << " r " << r;
    }
  }
}

TEST(LowRankFactorizers, AtEqualRankSvdLlmIsNeverWorseOnItsCalibrationData) {
  const at::Tensor x = correlated_inputs(500, 24, 7);
  const InputStats stats = stats_of(x);
  at::manual_seed(8);
  const at::Tensor w = at::randn({32, 24}, at::kDouble);
  const auto error = [&](const MatrixFactorizer& f, int64_t r) {
    return naive_output_error(w, rebuild(f.decompose("w", w, stats), r), x);
  };
  for (int64_t r : {3, 8, 16}) {
    const double best = error(SvdLlmFactorizer(), r);
    EXPECT_LE(best, error(AsvdFactorizer(0.5), r) * (1 + 1e-9)) << r;
    EXPECT_LE(best, error(SvdFactorizer(), r) * (1 + 1e-9)) << r;
  }
}

TEST(LowRankFactorizers, SvdLlmDampensARankDeficientHessian) {
  const at::Tensor x = correlated_inputs(5, 16, 9);  // 5 tokens: Hessian of rank 5 out of 16
  InputStats stats = stats_of(x);
  stats.hessian.select(0, 3).zero_();                // a dead input channel as well
  stats.hessian.select(1, 3).zero_();
  const at::Tensor w = at::randn({8, 16}, at::kDouble);
  const MatrixDecomposition d = SvdLlmFactorizer().decompose("w", w, stats);
  EXPECT_GT(d.damp, 0.0);
  EXPECT_TRUE(at::isfinite(d.rows).all().item<bool>());
  EXPECT_TRUE(at::allclose(rebuild(d, 8), w, 1e-6, 1e-6));
}

TEST(LowRankFactorizers, ClearErrorsForMissingStatistics) {
  const at::Tensor w = at::randn({4, 4});
  EXPECT_THROW(SvdLlmFactorizer().decompose("w", w, InputStats{}), Error);
  EXPECT_THROW(AsvdFactorizer().decompose("w", w, InputStats{}), Error);
  InputStats bad = stats_of(at::randn({10, 4}, at::kDouble));
  bad.hessian[0][0] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(SvdLlmFactorizer().decompose("w", w, bad), Error);
}

}  // namespace
}  // namespace llmpress

// CP (ALS) and Tucker (HOSVD + HOOI): exact recovery of tensors built with a known structure and
// a fit error that never increases from one sweep to the next.
#include <gtest/gtest.h>

#include <numeric>

#include "llmpress/core/error.h"
#include "llmpress/lowrank/cp.h"
#include "llmpress/lowrank/tensor_ops.h"
#include "llmpress/lowrank/tucker.h"
#include "llmpress/lowrank/tucker_compressor.h"
#include "llmpress/lowrank/tucker_weight.h"

namespace llmpress {
namespace {

at::Tensor random_cp_tensor(const std::vector<int64_t>& sizes, int64_t rank) {
  at::Tensor x = at::zeros(sizes, at::kDouble);
  for (int64_t r = 0; r < rank; ++r) {
    at::Tensor term = at::ones({}, at::kDouble);
    for (int64_t size : sizes) term = at::einsum("...,i->...i", {term, at::randn({size}, at::kDouble)});
    x += term;
  }
  return x;
}

void expect_non_increasing(const std::vector<double>& errors) {
  for (size_t i = 1; i < errors.size(); ++i) EXPECT_LE(errors[i], errors[i - 1] + 1e-12) << "sweep " << i;
}

TEST(TensorOps, ModeProductAgainstNaiveLoop) {
  at::manual_seed(0);
  const at::Tensor x = at::randn({3, 4, 5}, at::kDouble), m = at::randn({2, 4}, at::kDouble);
  const at::Tensor y = mode_product(x, m, 1);
  ASSERT_EQ(y.sizes(), at::IntArrayRef({3, 2, 5}));
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 2; ++j)
      for (int64_t k = 0; k < 5; ++k) {
        double sum = 0;
        for (int64_t t = 0; t < 4; ++t) sum += x[i][t][k].item<double>() * m[j][t].item<double>();
        EXPECT_NEAR(y[i][j][k].item<double>(), sum, 1e-12);
      }
  EXPECT_EQ(unfold_mode(x, 2).sizes(), at::IntArrayRef({5, 12}));
}

TEST(CpAls, RecoversKnownLowRankTensors) {
  at::manual_seed(1);
  for (const auto& sizes : {std::vector<int64_t>{6, 7, 8}, std::vector<int64_t>{4, 5, 6, 3}}) {
    const at::Tensor x = random_cp_tensor(sizes, 3);
    CpOptions options;
    options.rank = 3;
    options.seed = 7;
    const CpDecomposition d = cp_als(x, options);
    EXPECT_LT((d.reconstruct() - x).norm().item<double>() / x.norm().item<double>(), 1e-6) << sizes.size() << "-way";
    expect_non_increasing(d.errors);
    EXPECT_EQ(d.parameter_count(), 3 + 3 * std::accumulate(sizes.begin(), sizes.end(), int64_t(0)));
  }
}

TEST(CpAls, ErrorNeverIncreasesOnAGeneralTensorAndSeedIsDeterministic) {
  at::manual_seed(2);
  const at::Tensor x = at::randn({5, 6, 7}, at::kDouble);
  CpOptions options;
  options.rank = 4;
  options.max_iterations = 60;
  const CpDecomposition a = cp_als(x, options), b = cp_als(x, options);
  EXPECT_GT(a.errors.size(), 5u);
  expect_non_increasing(a.errors);
  // Same seed, same start; BLAS reductions may differ in the last bits between runs.
  for (size_t i = 0; i < std::min(a.errors.size(), b.errors.size()); ++i) EXPECT_NEAR(a.errors[i], b.errors[i], 1e-9);
  EXPECT_GT(a.errors.back(), 0.05);  // a random tensor is not rank 4
  EXPECT_THROW(cp_als(at::randn({3, 3}), options), Error);
}

TEST(Tucker, RecoversKnownCoreAndFactors) {
  at::manual_seed(3);
  for (const auto& [sizes, ranks] : {std::pair{std::vector<int64_t>{6, 7, 8}, std::vector<int64_t>{2, 3, 4}},
                                     std::pair{std::vector<int64_t>{4, 5, 6, 3}, std::vector<int64_t>{2, 2, 3, 2}}}) {
    at::Tensor x = at::randn(ranks, at::kDouble);
    for (size_t n = 0; n < sizes.size(); ++n)
      x = mode_product(x, at::randn({sizes[n], ranks[n]}, at::kDouble), int64_t(n));  // any full-rank factors
    const TuckerDecomposition h = tucker_hosvd(x, ranks);
    EXPECT_LT((h.reconstruct() - x).norm().item<double>() / x.norm().item<double>(), 1e-10);
    for (const at::Tensor& f : h.factors)
      EXPECT_TRUE(at::allclose(at::matmul(f.transpose(0, 1), f), at::eye(f.size(1), at::kDouble), 1e-10, 1e-10));
    TuckerOptions options;
    options.ranks = ranks;
    const TuckerDecomposition d = tucker_hooi(x, options);
    EXPECT_LT((d.reconstruct() - x).norm().item<double>() / x.norm().item<double>(), 1e-10);
  }
}

TEST(Tucker, HooiErrorNeverIncreasesAndMatchesTheReconstruction) {
  at::manual_seed(4);
  const at::Tensor x = at::randn({8, 9, 10}, at::kDouble) + random_cp_tensor({8, 9, 10}, 2) * 2;
  TuckerOptions options;
  options.ranks = {3, 3, 3};
  options.max_iterations = 30;
  const TuckerDecomposition d = tucker_hooi(x, options);
  EXPECT_GE(d.iterations, 1);
  expect_non_increasing(d.errors);
  EXPECT_LE(d.errors.back(), d.errors.front());
  EXPECT_NEAR(d.errors.back(), (d.reconstruct() - x).norm().item<double>() / x.norm().item<double>(), 1e-9);
  options.ranks = {3, 3};
  EXPECT_THROW(tucker_hooi(x, options), Error);
  options.ranks = {3, 3, 11};
  EXPECT_THROW(tucker_hooi(x, options), Error);
}

TEST(TuckerCompressor, AttentionHeadsWithinBudgetAndMlpLeftDense) {
  at::manual_seed(6);
  // Energy only in the first 3 head_dim directions and 10 hidden directions: with budget enough for
  // exactly those ranks, they are the ones chosen.
  const at::Tensor core = at::randn({4, 3, 10}, at::kDouble);
  const at::Tensor head_basis = std::get<0>(at::linalg_qr(at::randn({16, 3}, at::kDouble)));
  const at::Tensor hidden_basis = std::get<0>(at::linalg_qr(at::randn({64, 10}, at::kDouble)));
  const at::Tensor structured = mode_product(mode_product(core, head_basis, 1), hidden_basis, 2);
  const double exact = 4 * 3 * 10 + 4 * 4 + 16 * 3 + 64 * 10;
  const std::vector<int64_t> ranks = tucker_ranks_for_budget(structured, 0, exact);
  EXPECT_EQ(ranks, (std::vector<int64_t>{4, 3, 10}));
  EXPECT_TRUE(tucker_ranks_for_budget(structured, 0, 10).empty());

  at::manual_seed(5);
  TuckerCompressor compressor(0.4, 16);
  const Linear q{std::make_shared<DenseWeight>(at::randn({64, 64})), {}};
  const auto weight = compressor.compress("model.layers.0.self_attn.q_proj", q, {});
  ASSERT_EQ(weight->kind(), "tucker");
  EXPECT_LE(weight->parameter_count(), int64_t(0.4 * 64 * 64));
  EXPECT_EQ(weight->storage_bits(), weight->parameter_count() * 16);
  const at::Tensor x = at::randn({3, 64});
  EXPECT_TRUE(at::allclose(weight->forward(x), at::matmul(x, weight->dense().transpose(0, 1)), 1e-4, 1e-5));
  const auto restored = restore_weight(weight->save());
  EXPECT_TRUE(at::allclose(restored->dense(), weight->dense()));
  const auto o = compressor.compress("model.layers.0.self_attn.o_proj", q, {});
  EXPECT_EQ(o->kind(), "tucker");
  const Linear up{std::make_shared<DenseWeight>(at::randn({96, 64})), {}};
  EXPECT_EQ(compressor.compress("model.layers.0.mlp.up_proj", up, {})->kind(), "dense");
}

}  // namespace
}  // namespace llmpress

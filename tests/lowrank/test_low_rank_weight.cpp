// The low-rank weight kind, rank selection and rank allocation.
#include <gtest/gtest.h>

#include "llmpress/core/error.h"
#include "llmpress/lowrank/low_rank_compressor.h"
#include "llmpress/lowrank/rank_allocation.h"
#include "llmpress/lowrank/svd.h"
#include "llmpress/quant/rtn.h"

namespace llmpress {
namespace {

TEST(LowRankWeight, ForwardIsTwoProductsAndSizesCountBothFactors) {
  at::manual_seed(0);
  const at::Tensor u = at::randn({12, 3}), v = at::randn({3, 20});
  const LowRankWeight w(u, v);
  EXPECT_EQ(w.in_features(), 20);
  EXPECT_EQ(w.out_features(), 12);
  EXPECT_EQ(w.rank(), 3);
  EXPECT_EQ(w.kind(), "lowrank");
  EXPECT_EQ(w.parameter_count(), 3 * (12 + 20));
  EXPECT_EQ(w.storage_bits(), 3 * (12 + 20) * 16);
  const at::Tensor x = at::randn({2, 5, 20});
  // Naive reference: every output as a double loop over the product matrix.
  const at::Tensor full = at::matmul(u, v);
  at::Tensor expected = at::zeros({2, 5, 12});
  for (int64_t o = 0; o < 12; ++o) expected.select(2, o).copy_((x * full[o]).sum(-1));
  EXPECT_TRUE(at::allclose(w.forward(x), expected, 1e-4, 1e-5));
  EXPECT_TRUE(at::allclose(w.dense(), full));
  EXPECT_THROW(LowRankWeight(at::randn({4, 3}), at::randn({2, 5})), Error);
}

TEST(LowRankWeight, QuantizedFactorsReportTheirPackedSizeAndSurviveSaveRestore) {
  at::manual_seed(1);
  IntGridSpec spec;
  spec.bits = 4;
  spec.group_size = 8;
  const auto qu = rtn_quantize(at::randn({16, 4}), spec), qv = rtn_quantize(at::randn({4, 32}), spec);
  const LowRankWeight w{std::shared_ptr<LinearWeight>(qu), std::shared_ptr<LinearWeight>(qv)};
  EXPECT_EQ(w.storage_bits(), qu->storage_bits() + qv->storage_bits());
  EXPECT_LT(w.storage_bits(), 4 * (16 + 32) * 16 / 2);
  const auto restored = restore_weight(w.save());
  EXPECT_TRUE(at::equal(restored->dense(), w.dense()));
  EXPECT_EQ(restored->storage_bits(), w.storage_bits());
  const LowRankWeight plain(at::randn({6, 2}), at::randn({2, 7}));
  EXPECT_TRUE(at::equal(restore_weight(plain.save())->dense(), plain.dense()));
}

TEST(LowRankRanks, RatioRankOverridesAndTheDenseRule) {
  RankSpec spec;
  spec.ratio = 0.5;
  spec.overrides = {parse_rank_override("mlp\\.down_proj=7"), parse_rank_override("k_proj=0")};
  spec.check();
  // 0.5 * 256 * 768 / 1024 = 96
  EXPECT_EQ(spec.rank_for("model.layers.0.mlp.up_proj", 768, 256), 96);
  EXPECT_EQ(spec.rank_for("model.layers.0.mlp.down_proj", 256, 768), 7);
  EXPECT_EQ(spec.rank_for("model.layers.0.self_attn.k_proj", 128, 256), 0);
  spec.ratio = -1;
  spec.rank = 500;
  EXPECT_EQ(spec.rank_for("model.layers.0.self_attn.q_proj", 256, 256), 256);  // capped
  EXPECT_FALSE(factorization_saves(256, 256, 128));                            // 128 * 512 = 256 * 256
  EXPECT_TRUE(factorization_saves(256, 256, 127));
  EXPECT_THROW(parse_rank_override("q_proj"), Error);
  EXPECT_THROW(parse_rank_override("q_proj=x"), Error);
  RankSpec bad;
  bad.overrides = {{"(", 3}};
  EXPECT_THROW(bad.check(), Error);
  EXPECT_THROW(RankSpec{}.check(), Error);
}

TEST(LowRankRanks, CompressorLeavesLayersDenseWhenFactorsAreNotSmaller) {
  RankSpec spec;
  spec.rank = 8;
  LowRankCompressor compressor(std::make_shared<SvdFactorizer>(), spec);
  Linear square{std::make_shared<DenseWeight>(at::randn({16, 16})), {}};
  EXPECT_EQ(compressor.compress("a", square, {})->kind(), "dense");  // 8 * 32 = 16 * 16
  Linear wide{std::make_shared<DenseWeight>(at::randn({16, 64})), {}};
  const auto low = compressor.compress("b", wide, {});
  ASSERT_EQ(low->kind(), "lowrank");
  EXPECT_EQ(low->parameter_count(), 8 * 80);
  EXPECT_TRUE(at::equal(restore_weight(low->save())->dense(), low->dense()));
}

// Brute force over every rank pair for two layers with decreasing component errors: greedy
// allocation by error per parameter finds the optimum when widths are equal.
TEST(LowRankRanks, AllocationMeetsTheBudgetAndMatchesBruteForce) {
  const int64_t out = 10, in = 30;  // max rank 7 (7 * 40 = 280 < 300)
  std::vector<LayerSpectrum> layers = {
      {"a", out, in, at::tensor({5.0, 3.0, 2.0, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05}, at::kDouble)},
      {"b", out, in, at::tensor({9.0, 1.0, 0.9, 0.8, 0.1, 0.01, 0.001, 0.0001, 0.0, 0.0}, at::kDouble)}};
  const double ratio = 0.5;  // budget 300 parameters = 7.5 rank units
  const auto ranks = allocate_ranks(layers, ratio);
  auto residual = [&](const LayerSpectrum& l, int64_t r) {
    return r == 0 ? 0.0 : l.errors.narrow(0, r, l.errors.size(0) - r).sum().item<double>();
  };
  double best = 1e30;
  for (int64_t ra = 1; ra <= 7; ++ra)
    for (int64_t rb = 1; rb <= 7; ++rb)
      if ((ra + rb) * (out + in) <= ratio * 2 * out * in) best = std::min(best, residual(layers[0], ra) + residual(layers[1], rb));
  const int64_t ra = ranks.at("a"), rb = ranks.at("b");
  ASSERT_GT(ra, 0);
  ASSERT_GT(rb, 0);
  EXPECT_LE((ra + rb) * (out + in), ratio * 2 * out * in);
  EXPECT_DOUBLE_EQ(residual(layers[0], ra) + residual(layers[1], rb), best);
  EXPECT_GT(ra, rb);  // layer a's error is spread over more components
  // A generous budget makes layers dense once that is worth it.
  const auto all = allocate_ranks(layers, 1.0);
  EXPECT_EQ(all.at("a"), 0);
}

}  // namespace
}  // namespace llmpress

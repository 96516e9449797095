// Mask selection, magnitude and Wanda: exact sparsity per row / layer / N:M group, the lowest
// scores chosen (checked against a plain sort), and clear errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "llmpress/core/error.h"
#include "llmpress/prune/magnitude.h"
#include "llmpress/prune/mask.h"
#include "llmpress/prune/sparsity_report.h"
#include "llmpress/prune/wanda.h"

namespace llmpress {
namespace {

// The k lowest entries of each row by a plain std::sort of (score, column) pairs.
at::Tensor naive_row_mask(const at::Tensor& scores, int64_t k) {
  const at::Tensor s = scores.to(at::kDouble).contiguous();
  at::Tensor mask = at::zeros(s.sizes(), at::kBool);
  for (int64_t r = 0; r < s.size(0); ++r) {
    std::vector<std::pair<double, int64_t>> entries;
    for (int64_t c = 0; c < s.size(1); ++c) entries.push_back({s[r][c].item<double>(), c});
    std::sort(entries.begin(), entries.end());
    for (int64_t i = 0; i < k; ++i) mask[r][entries[size_t(i)].second] = true;
  }
  return mask;
}

TEST(PruneMask, RowLayerAndNmCountsAreExact) {
  at::manual_seed(11);
  const at::Tensor scores = at::rand({12, 40});
  for (double s : {0.0, 0.3, 0.5, 0.7, 0.99}) {
    const at::Tensor row = lowest_mask(scores, s, MaskScope::Row);
    EXPECT_TRUE(at::equal(row.sum(1), at::full({12}, pruned_count(40, s), at::kLong))) << s;
    EXPECT_TRUE(at::equal(row, naive_row_mask(scores, pruned_count(40, s)))) << s;
    const at::Tensor layer = lowest_mask(scores, s, MaskScope::Layer);
    EXPECT_EQ(layer.sum().item<int64_t>(), pruned_count(480, s)) << s;
    // Everything removed scores no higher than everything kept.
    if (s > 0) EXPECT_LE(scores.masked_select(layer).max().item<double>(), scores.masked_select(~layer).min().item<double>());
  }
  EXPECT_EQ(pruned_count(10, 0.7), 7);
  for (auto [n, m] : {std::pair<int64_t, int64_t>{2, 4}, {4, 8}, {1, 4}}) {
    const at::Tensor mask = nm_mask(scores, n, m);
    const at::Tensor per_group = mask.reshape({12, 40 / m, m}).sum(-1);
    EXPECT_TRUE((per_group == m - n).all().item<bool>()) << n << ":" << m;
    // Within each group, the m - n lowest scores.
    const at::Tensor grouped = scores.reshape({-1, m});
    EXPECT_TRUE(at::equal(mask.reshape({-1, m}), naive_row_mask(grouped, m - n))) << n << ":" << m;
    const SparsityStats stats = measure_sparsity(scores.masked_fill(mask, 0), n, m);
    EXPECT_TRUE(stats.compliant());
    EXPECT_EQ(stats.zeros, 12 * 40 * (m - n) / m);
  }
}

TEST(PruneMask, TiesStillGiveExactCounts) {
  const at::Tensor equal = at::ones({4, 16});
  EXPECT_EQ(lowest_mask(equal, 0.5, MaskScope::Row).sum().item<int64_t>(), 32);
  EXPECT_EQ(lowest_mask(equal, 0.25, MaskScope::Layer).sum().item<int64_t>(), 16);
  EXPECT_TRUE((nm_mask(equal, 2, 4).reshape({4, 4, 4}).sum(-1) == 2).all().item<bool>());
}

TEST(PruneMask, BadTargetsAndShapesThrow) {
  const at::Tensor scores = at::rand({4, 10});
  EXPECT_THROW(nm_mask(scores, 2, 4), Error);  // 10 is not a multiple of 4
  EXPECT_THROW(lowest_mask(scores, 1.0, MaskScope::Row), Error);
  EXPECT_THROW(lowest_mask(scores, -0.1, MaskScope::Row), Error);
  EXPECT_THROW(lowest_mask(scores.masked_fill(scores > 0.5, NAN), 0.5, MaskScope::Row), Error);
  EXPECT_THROW(SparsityTarget::pattern("4:2"), Error);
  EXPECT_THROW(SparsityTarget::pattern("2-4"), Error);
  EXPECT_THROW(SparsityTarget::pattern("2:4x"), Error);
  const SparsityTarget t = SparsityTarget::pattern("2:4");
  EXPECT_EQ(t.describe(), "2:4");
  EXPECT_DOUBLE_EQ(t.fraction(), 0.5);
}

TEST(PruneMagnitude, GlobalThresholdRemovesExactlyTheSmallestOverall) {
  at::manual_seed(12);
  const std::vector<at::Tensor> weights = {at::randn({8, 16}), at::randn({16, 8}) * 3, at::randn({4, 32}) * 0.1};
  const double t = global_magnitude_threshold(weights, 0.6);
  int64_t removed = 0;
  for (const at::Tensor& w : weights) removed += (w.abs() <= t).sum().item<int64_t>();
  EXPECT_EQ(removed, pruned_count(128 * 3, 0.6));
  // The small-scale layer loses more than the large-scale one: the point of a global threshold.
  EXPECT_GT((weights[2].abs() <= t).sum().item<int64_t>(), (weights[1].abs() <= t).sum().item<int64_t>());
  EXPECT_LT(global_magnitude_threshold(weights, 0.0), 0.0);
}

TEST(PruneWanda, ScoresAreMagnitudeTimesInputNormPerRow) {
  at::manual_seed(13);
  const at::Tensor w = at::randn({10, 32});
  const at::Tensor x = at::randn({50, 32}) * at::linspace(0.01, 4.0, 32);
  const at::Tensor sum_squares = x.pow(2).sum(0).to(at::kDouble);
  for (double s : {0.5, 0.7}) {
    const at::Tensor pruned = wanda_prune(w, sum_squares, SparsityTarget::unstructured(s));
    const at::Tensor removed = (pruned == 0);
    EXPECT_TRUE(at::equal(removed.sum(1), at::full({10}, pruned_count(32, s), at::kLong)));
    // Independent score: |w| * ||x_j|| from the raw inputs.
    const at::Tensor scores = w.abs() * x.norm(2, 0).unsqueeze(0);
    EXPECT_TRUE(at::equal(removed, naive_row_mask(scores, pruned_count(32, s))));
    EXPECT_TRUE(at::equal(pruned.masked_select(~removed), w.masked_select(~removed)));
  }
  // With equal input norms Wanda is per-row magnitude pruning.
  EXPECT_TRUE(at::equal(wanda_prune(w, at::ones({32}, at::kDouble), SparsityTarget::unstructured(0.5)),
                        magnitude_prune(w, SparsityTarget::unstructured(0.5), MaskScope::Row)));
  const at::Tensor nm = wanda_prune(w, sum_squares, SparsityTarget::pattern("4:8"));
  EXPECT_TRUE(measure_sparsity(nm, 4, 8).compliant());
  EXPECT_EQ(measure_sparsity(nm).zeros, 160);
  EXPECT_THROW(wanda_prune(w, at::ones({31}, at::kDouble), SparsityTarget::unstructured(0.5)), Error);
}

TEST(PruneReport, DetectsPatternsAndCountsZeros) {
  at::manual_seed(14);
  at::Tensor w = at::randn({4, 16});
  EXPECT_EQ(detect_nm_pattern(w), "");
  w.masked_fill_(nm_mask(w.abs(), 4, 8), 0);
  EXPECT_EQ(detect_nm_pattern(w), "4:8");
  w.masked_fill_(nm_mask(w.abs(), 2, 4), 0);
  EXPECT_EQ(detect_nm_pattern(w), "2:4");
  const SparsityStats stats = measure_sparsity(w, 2, 4);
  EXPECT_EQ(stats.groups, 16);
  EXPECT_GE(stats.sparsity(), 0.5);
}

}  // namespace
}  // namespace llmpress

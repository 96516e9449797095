// SparseGPT against an independent unblocked OBS loop, its exact identities (sparsity 0 leaves the
// weights alone; sparsity 0 with a grid is GPTQ), joint quantization and bad Hessians.
#include <gtest/gtest.h>

#include "llmpress/core/error.h"
#include "llmpress/prune/sparsegpt.h"
#include "llmpress/prune/sparsity_report.h"
#include "llmpress/quant/gptq.h"
#include "llmpress/quant/rtn.h"

namespace llmpress {
namespace {

// Correlated inputs of very unequal scales, like real activations.
at::Tensor random_hessian(int64_t n, int64_t tokens = 400) {
  const at::Tensor x = at::randn({tokens, n}, at::kDouble) * at::linspace(0.1, 3.0, n, at::kDouble).pow(2) +
                       at::randn({tokens, 1}, at::kDouble);
  return at::matmul(x.t(), x) / double(tokens);
}

double output_error(const at::Tensor& w, const at::Tensor& q, const at::Tensor& h) {
  const at::Tensor d = (w - q).to(at::kDouble);
  return (at::matmul(d, h) * d).sum().item<double>();
}

// Optimal Brain Surgeon one column at a time, in float64, straight from its definition: once the
// columns before k are fixed, the inverse Hessian of the rest is inverse(H[k:, k:]); fixing column
// k at q moves the remaining columns by -(w_k - q) / [H^-1]_kk * [H^-1]_k,: . The mask of each
// block (or N:M group) is chosen by the OBS saliency w^2 / [H^-1]_jj at the block's start, where
// [H^-1]_jj is taken from inverse(H[j:, j:]) for each column j of the block.
at::Tensor naive_obs_prune(const at::Tensor& weight, const at::Tensor& damped_h, const SparsityTarget& target,
                           int64_t block) {
  at::Tensor w = weight.to(at::kDouble).clone();
  const int64_t cols = w.size(1);
  std::vector<at::Tensor> inverses;
  for (int64_t k = 0; k < cols; ++k)
    inverses.push_back(at::inverse(damped_h.narrow(0, k, cols - k).narrow(1, k, cols - k)));
  at::Tensor d = at::empty({cols}, at::kDouble);
  for (int64_t k = 0; k < cols; ++k) d[k] = inverses[size_t(k)][0][0];
  at::Tensor mask = at::zeros(w.sizes(), at::kBool);
  for (int64_t k = 0; k < cols; ++k) {
    const int64_t span = target.semi_structured() ? target.m : block;
    if (k % span == 0) {
      const int64_t n = std::min(span, cols - k);
      const at::Tensor saliency = w.narrow(1, k, n).pow(2) / d.narrow(0, k, n).unsqueeze(0);
      mask.narrow(1, k, n).copy_(target.semi_structured() ? nm_mask(saliency, target.n, target.m)
                                                          : lowest_mask(saliency, target.sparsity, MaskScope::Layer));
    }
    const at::Tensor col = w.narrow(1, k, 1).clone();
    const at::Tensor q = col.masked_fill(mask.narrow(1, k, 1), 0.0);
    const at::Tensor& inv = inverses[size_t(k)];
    w.narrow(1, k, cols - k).sub_(at::matmul((col - q) / inv[0][0], inv.narrow(0, 0, 1)));
    w.narrow(1, k, 1).copy_(q);  // exactly q (the update leaves rounding residue in column k)
  }
  return w;
}

SparseGptOptions options_for(const SparsityTarget& target, int64_t block) {
  SparseGptOptions options;
  options.target = target;
  options.block_size = block;
  return options;
}

TEST(SparseGpt, MatchesUnblockedObsLoop) {
  at::manual_seed(21);
  const at::Tensor w = at::randn({12, 48});
  const at::Tensor h = random_hessian(48);
  const at::Tensor damped = h + 0.01 * h.diagonal().mean().item<double>() * at::eye(48, at::kDouble);
  for (const SparsityTarget& target : {SparsityTarget::unstructured(0.5), SparsityTarget::unstructured(0.7),
                                       SparsityTarget::pattern("2:4"), SparsityTarget::pattern("4:8")}) {
    const SparseGptResult r = sparsegpt_prune(w, h, options_for(target, 16));
    const at::Tensor naive = naive_obs_prune(w, damped, target, 16);
    EXPECT_TRUE(at::equal(r.weight == 0, naive == 0)) << target.describe();
    const double scale = w.abs().max().item<double>();
    EXPECT_LT((r.weight.to(at::kDouble) - naive).abs().max().item<double>(), 1e-4 * scale) << target.describe();
    EXPECT_FALSE(r.fell_back);
  }
}

TEST(SparseGpt, ExactSparsityPerBlockAndPerGroup) {
  at::manual_seed(22);
  const at::Tensor w = at::randn({20, 96});
  const at::Tensor h = random_hessian(96);
  const SparseGptResult r = sparsegpt_prune(w, h, options_for(SparsityTarget::unstructured(0.6), 32));
  for (int64_t b = 0; b < 3; ++b)
    EXPECT_EQ(r.mask.narrow(1, 32 * b, 32).sum().item<int64_t>(), pruned_count(20 * 32, 0.6));
  EXPECT_TRUE(at::equal(r.mask, r.weight == 0));
  for (const char* pattern : {"2:4", "4:8"}) {
    const SparsityTarget t = SparsityTarget::pattern(pattern);
    const SparseGptResult nm = sparsegpt_prune(w, h, options_for(t, 32));
    const SparsityStats stats = measure_sparsity(nm.weight, t.n, t.m);
    EXPECT_TRUE(stats.compliant()) << pattern;
    EXPECT_EQ(stats.zeros, 20 * 96 / 2) << pattern;
  }
  // Lower error than removing the same fraction by magnitude without reconstruction.
  const at::Tensor magnitude = w.masked_fill(lowest_mask(w.abs(), 0.6, MaskScope::Layer), 0.0);
  EXPECT_LT(output_error(w, r.weight, h), output_error(w, magnitude, h));
}

TEST(SparseGpt, SparsityZeroLeavesWeightsUnchanged) {
  at::manual_seed(23);
  const at::Tensor w = at::randn({8, 64});
  const SparseGptResult r = sparsegpt_prune(w, random_hessian(64), options_for(SparsityTarget::unstructured(0), 16));
  EXPECT_TRUE(at::equal(r.weight, w));
  EXPECT_EQ(r.loss, 0.0);
}

TEST(SparseGpt, SparsityZeroWithGridIsGptq) {
  at::manual_seed(24);
  const at::Tensor w = at::randn({16, 96});
  const at::Tensor h = random_hessian(96);
  for (int64_t group : {int64_t(32), int64_t(-1)}) {
    IntGridSpec grid;
    grid.bits = 3;
    grid.group_size = group;
    SparseGptOptions options = options_for(SparsityTarget::unstructured(0), 48);
    options.grid = grid;
    GptqOptions gptq;
    gptq.grid = grid;
    gptq.block_size = 48;
    const SparseGptResult r = sparsegpt_prune(w, h, options);
    const GptqResult g = gptq_quantize(w, h, gptq);
    EXPECT_TRUE(at::equal(r.quantized->codes(), g.weight->codes())) << group;
    EXPECT_TRUE(at::equal(r.quantized->scales(), g.weight->scales())) << group;
    EXPECT_TRUE(at::equal(r.weight, g.weight->dense())) << group;
  }
}

TEST(SparseGpt, JointQuantizationKeepsTheMaskAndTheGrid) {
  at::manual_seed(25);
  const at::Tensor w = at::randn({16, 64});
  const at::Tensor h = random_hessian(64);
  IntGridSpec grid;
  grid.bits = 4;
  grid.group_size = 32;
  SparseGptOptions options = options_for(SparsityTarget::pattern("2:4"), 32);
  options.grid = grid;
  const SparseGptResult r = sparsegpt_prune(w, h, options);
  ASSERT_TRUE(r.quantized);
  EXPECT_TRUE(at::equal(r.quantized->dense(), r.weight));
  EXPECT_TRUE(measure_sparsity(r.weight, 2, 4).compliant());
  EXPECT_TRUE((r.weight.masked_select(r.mask) == 0).all().item<bool>());
  // Joint quantization costs something over pruning alone, and far less than 2:4 magnitude pruning
  // followed by rounding to nearest.
  const SparseGptResult sparse = sparsegpt_prune(w, h, options_for(SparsityTarget::pattern("2:4"), 32));
  EXPECT_GT(output_error(w, r.weight, h), output_error(w, sparse.weight, h));
  const at::Tensor naive = rtn_quantize(w.masked_fill(nm_mask(w.abs(), 2, 4), 0.0), grid)->dense();
  EXPECT_LT(output_error(w, r.weight, h), output_error(w, naive, h));
}

TEST(SparseGpt, KeepZerosQuantizesAPrunedWeightWithoutRefillingIt) {
  at::manual_seed(27);
  // Strongly correlated inputs: compensation moves the other weights by a lot.
  const at::Tensor x = at::randn({400, 1}, at::kDouble) + 0.05 * at::randn({400, 64}, at::kDouble);
  const at::Tensor h = at::matmul(x.t(), x) / 400.0;
  const at::Tensor pruned = at::randn({16, 64}).masked_fill(at::rand({16, 64}) < 0.5, 0.0);
  IntGridSpec grid;
  grid.bits = 4;
  grid.group_size = 32;
  SparseGptOptions options = options_for(SparsityTarget::unstructured(0), 32);
  options.grid = grid;
  // Plain GPTQ-style compensation fills zeros in ...
  SparseGptOptions fine = options;
  fine.grid->bits = 8;
  const at::Tensor refilled = sparsegpt_prune(pruned, h, fine).weight;
  EXPECT_TRUE((refilled.masked_select(pruned == 0) != 0).any().item<bool>());
  fine.keep_zeros = true;
  EXPECT_TRUE((sparsegpt_prune(pruned, h, fine).weight.masked_select(pruned == 0) == 0).all().item<bool>());
  // ... keep_zeros leaves every one of them zero, and also applies on top of a further N:M mask.
  options.keep_zeros = true;
  const SparseGptResult kept = sparsegpt_prune(pruned, h, options);
  EXPECT_TRUE((kept.weight.masked_select(pruned == 0) == 0).all().item<bool>());
  EXPECT_TRUE(at::equal(kept.quantized->dense(), kept.weight));
  options.target = SparsityTarget::pattern("2:4");
  const SparseGptResult nm = sparsegpt_prune(pruned, h, options);
  EXPECT_TRUE((nm.weight.masked_select(pruned == 0) == 0).all().item<bool>());
  EXPECT_TRUE(measure_sparsity(nm.weight, 2, 4).compliant());
}

TEST(SparseGpt, BadHessiansAreHandled) {
  at::manual_seed(26);
  const at::Tensor w = at::randn({8, 64});
  at::Tensor h = random_hessian(64);
  const at::Tensor v = at::randn({64, 1}, at::kDouble);
  h = h - 50.0 * at::matmul(v, v.t()) / v.pow(2).sum();
  SparseGptOptions options = options_for(SparsityTarget::unstructured(0.5), 16);
  const SparseGptResult damped = sparsegpt_prune(w, h, options, "indefinite");
  EXPECT_GT(damped.damp_increases, 0);
  EXPECT_FALSE(damped.fell_back);
  EXPECT_TRUE(at::isfinite(damped.weight).all().item<bool>());

  // No dampening increase allowed: magnitude pruning within each block, nothing propagated.
  options.max_damp_increases = 0;
  const SparseGptResult fallback = sparsegpt_prune(w, h, options, "indefinite");
  EXPECT_TRUE(fallback.fell_back);
  at::Tensor expected = w.clone();
  for (int64_t b = 0; b < 4; ++b) {
    at::Tensor part = expected.narrow(1, 16 * b, 16);
    part.masked_fill_(lowest_mask(part.pow(2), 0.5, MaskScope::Layer), 0.0);
  }
  EXPECT_TRUE(at::equal(fallback.weight, expected));

  // Dead inputs: their weights become zero.
  options.max_damp_increases = 6;
  at::Tensor dead = random_hessian(64);
  dead.narrow(0, 5, 1).zero_();
  dead.narrow(1, 5, 1).zero_();
  EXPECT_TRUE((sparsegpt_prune(w, dead, options).weight.narrow(1, 5, 1) == 0).all().item<bool>());

  at::Tensor broken = random_hessian(64);
  broken[3][3] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(sparsegpt_prune(w, broken, options), Error);
  EXPECT_THROW(sparsegpt_prune(w, random_hessian(32), options), Error);
  EXPECT_THROW(sparsegpt_prune(w, random_hessian(64), options_for(SparsityTarget::pattern("4:8"), 12)), Error);
}

}  // namespace
}  // namespace llmpress

// Integer grids, RTN and GPTQ: exact identities, act-order bookkeeping, bad Hessians, and GPTQ's
// advantage over RTN on real activations of stories260K.
#include <gtest/gtest.h>

#include "calib/calib_test_util.h"
#include "llmpress/calib/engine.h"
#include "llmpress/core/error.h"
#include "llmpress/model/transformer.h"
#include "llmpress/quant/gptq.h"
#include "llmpress/quant/rtn.h"

namespace llmpress {
namespace {

IntGridSpec grid(int bits, bool sym, int64_t group) {
  IntGridSpec spec;
  spec.bits = bits;
  spec.symmetric = sym;
  spec.group_size = group;
  return spec;
}

TEST(IntGrid, MinMaxFitCodesAndStorage) {
  at::manual_seed(1);
  const at::Tensor w = at::randn({8, 64});
  for (const IntGridSpec& spec : {grid(4, false, 32), grid(3, true, 16), grid(8, false, -1), grid(2, true, -1)}) {
    const auto q = rtn_quantize(w, spec);
    EXPECT_LE(q->codes().max().item<int64_t>(), spec.max_code());
    if (spec.symmetric) EXPECT_TRUE((q->zeros() == (1 << (spec.bits - 1))).all().item<bool>());
    // Round to nearest: inside the clipped-free range every error is at most half a step.
    const at::Tensor step = q->scales().to(at::kFloat).index_select(1, q->g_idx().to(at::kLong));
    const at::Tensor error = (q->dense() - w).abs();
    if (!spec.symmetric) EXPECT_TRUE((error <= step * 0.5001 + 1e-7).all().item<bool>()) << spec.describe();
    const int64_t groups = spec.group_size > 0 ? 64 / spec.group_size : 1;
    EXPECT_EQ(q->storage_bits(), 8 * 64 * spec.bits + 8 * groups * (16 + spec.bits)) << spec.describe();
  }
  // Asymmetric grids represent each group's min and max exactly up to the scale's rounding.
  const auto q = rtn_quantize(w, grid(8, false, -1));
  EXPECT_LT((q->dense() - w).abs().max().item<double>(), 0.02);
  EXPECT_THROW(grid(9, false, 32).check(), Error);
  EXPECT_THROW(grid(1, false, 32).check(), Error);
}

TEST(Gptq, IdentityHessianEqualsRtnExactly) {
  at::manual_seed(2);
  const at::Tensor w = at::randn({24, 160});
  for (const IntGridSpec& spec : {grid(4, false, 32), grid(3, true, 64), grid(2, false, -1)}) {
    GptqOptions options;
    options.grid = spec;
    options.block_size = 48;  // groups straddle blocks
    const GptqResult g = gptq_quantize(w, at::eye(160, at::kDouble), options);
    const auto r = rtn_quantize(w, spec);
    EXPECT_TRUE(at::equal(g.weight->codes(), r->codes())) << spec.describe();
    EXPECT_TRUE(at::equal(g.weight->scales(), r->scales())) << spec.describe();
    EXPECT_TRUE(at::equal(g.weight->zeros(), r->zeros())) << spec.describe();
    EXPECT_TRUE(at::equal(g.weight->dense(), r->dense())) << spec.describe();
  }
}

// A Hessian with very unequal input scales and correlations, like real activations.
at::Tensor random_hessian(int64_t n, int64_t tokens = 400) {
  const at::Tensor x = at::randn({tokens, n}, at::kDouble) * at::linspace(0.1, 3.0, n, at::kDouble).pow(2) +
                       at::randn({tokens, 1}, at::kDouble);
  return at::matmul(x.t(), x) / double(tokens);
}

double output_error(const at::Tensor& w, const at::Tensor& q, const at::Tensor& h) {
  const at::Tensor d = (w - q).to(at::kDouble);
  return (at::matmul(d, h) * d).sum().item<double>();
}

TEST(Gptq, ActOrderPermutationIsUndone) {
  at::manual_seed(3);
  const at::Tensor w = at::randn({16, 96});
  const at::Tensor h = random_hessian(96);
  for (bool static_groups : {false, true}) {
    GptqOptions options;
    options.grid = grid(4, false, 32);
    options.act_order = true;
    options.static_groups = static_groups;
    options.block_size = 32;
    const GptqResult r = gptq_quantize(w, h, options);
    EXPECT_FALSE(at::equal(r.permutation, at::arange(96, at::kLong)));
    // The stored matrix is the one computed in processing order, columns put back.
    EXPECT_TRUE(at::equal(r.weight->dense(), r.permuted_values.index_select(1, at::argsort(r.permutation))));
    const at::Tensor g_idx = r.weight->g_idx().to(at::kLong);
    if (static_groups) {
      EXPECT_TRUE(at::equal(g_idx, at::div(at::arange(96, at::kLong), 32, "floor")));
      EXPECT_FALSE(r.weight->act_order());
    } else {
      // Column permutation[k] belongs to group k / 32 of the processing order.
      EXPECT_TRUE(at::equal(g_idx.index_select(0, r.permutation), at::div(at::arange(96, at::kLong), 32, "floor")));
      EXPECT_TRUE(r.weight->act_order());
      EXPECT_EQ(r.weight->storage_bits(), 16 * 96 * 4 + 16 * 3 * (16 + 4) + 96 * 32);
    }
    // Still better than rounding to nearest on this Hessian.
    EXPECT_LT(output_error(w, r.weight->dense(), h), output_error(w, rtn_quantize(w, options.grid)->dense(), h));
  }
}

TEST(Gptq, BadHessiansAreHandled) {
  at::manual_seed(4);
  const at::Tensor w = at::randn({8, 64});
  GptqOptions options;
  options.grid = grid(4, false, 32);

  // Indefinite: one strongly negative eigenvalue. Dampening grows until it factorizes.
  at::Tensor h = random_hessian(64);
  const at::Tensor v = at::randn({64, 1}, at::kDouble);
  h = h - 50.0 * at::matmul(v, v.t()) / (v.pow(2).sum());
  const GptqResult damped = gptq_quantize(w, h, options, "indefinite");
  EXPECT_GT(damped.damp_increases, 0);
  EXPECT_FALSE(damped.fell_back_to_rtn);
  EXPECT_TRUE(at::isfinite(damped.weight->dense()).all().item<bool>());

  // No dampening allowed to grow: falls back to round to nearest, exactly.
  options.max_damp_increases = 0;
  const GptqResult fallback = gptq_quantize(w, h, options, "indefinite");
  EXPECT_TRUE(fallback.fell_back_to_rtn);
  EXPECT_TRUE(at::equal(fallback.weight->dense(), rtn_quantize(w, options.grid)->dense()));

  // Dead inputs (zero diagonal): their columns become exactly zero; an all-zero Hessian works.
  options.max_damp_increases = 6;
  at::Tensor dead = random_hessian(64);
  dead.narrow(0, 5, 1).zero_();
  dead.narrow(1, 5, 1).zero_();
  const GptqResult r = gptq_quantize(w, dead, options);
  EXPECT_TRUE((r.weight->dense().narrow(1, 5, 1) == 0).all().item<bool>());
  EXPECT_TRUE(at::isfinite(gptq_quantize(w, at::zeros({64, 64}, at::kDouble), options).weight->dense()).all().item<bool>());

  at::Tensor broken = random_hessian(64);
  broken[3][3] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(gptq_quantize(w, broken, options), Error);
}

// Quantizes with GPTQ, and records GPTQ's and RTN's output error on the same activations.
class ComparingCompressor : public Compressor {
 public:
  explicit ComparingCompressor(GptqOptions options) : options_(options) {}
  std::string describe() const override { return "compare"; }
  StatsRequest needs() const override { return {true, false, 0}; }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override {
    const at::Tensor w = linear.weight->dense();
    const GptqResult g = gptq_quantize(w, stats.hessian, options_, name);
    const double gptq = output_error(w, g.weight->dense(), stats.hessian);
    const double rtn = output_error(w, rtn_quantize(w, options_.grid)->dense(), stats.hessian);
    EXPECT_LT(gptq, rtn) << name << " " << options_.grid.describe();
    ++compared;
    return g.weight;
  }
  int compared = 0;

 private:
  GptqOptions options_;
};

TEST(Gptq, BeatsRtnOnRealActivationsOfEveryLinearLayer) {
  LLMPRESS_REQUIRE_SHARED(test::kStoriesModel);
  LLMPRESS_REQUIRE_SHARED(test::kStoriesCalib);
  const Checkpoint checkpoint = open_checkpoint(test::shared_path(test::kStoriesModel));
  const at::Tensor tokens = test::stories_calibration(checkpoint, 16, 128);
  for (const IntGridSpec& spec : {grid(4, false, 32), grid(3, true, -1)}) {
    GptqOptions options;
    options.grid = spec;
    options.act_order = spec.group_size < 0;
    ComparingCompressor compare(options);
    EngineOptions engine;
    engine.progress = false;
    compress_sequential(checkpoint, Transformer::load_shell(checkpoint), tokens, compare, engine);
    EXPECT_EQ(compare.compared, 7 * checkpoint.config.num_layers);
  }
}

}  // namespace
}  // namespace llmpress

// Simulated low-bit activations and SmoothQuant: absmax rounding keeps the extreme value and at most
// 2^bits - 1 levels per slice, with straight-through gradients; 16-bit activations and an 8-bit KV cache
// barely change the logits while 2 bits wreck them; SmoothQuant leaves the model's function unchanged and, at
// alpha 0.5, makes each channel's activation maximum equal its weight column maximum (the paper's balance).
#include <gtest/gtest.h>

#include "calib/calib_test_util.h"
#include "llmpress/core/error.h"
#include "llmpress/model/transformer.h"
#include "llmpress/quant/smoothquant.h"

namespace llmpress {
namespace {

TEST(ActivationQuant, AbsmaxRoundingKeepsTheExtremeAndFewLevels) {
  at::manual_seed(1);
  const at::Tensor x = at::randn({6, 64});
  for (int bits : {2, 4, 8}) {
    const at::Tensor q = fake_quantize_absmax(x, bits);
    for (int64_t r = 0; r < 6; ++r) {
      EXPECT_FLOAT_EQ(q[r].abs().max().item<float>(), x[r].abs().max().item<float>());
      EXPECT_LE(std::get<0>(at::_unique(q[r])).numel(), (int64_t(1) << bits) - 1);
    }
    const double step = x.abs().max().item<double>() / double((1 << (bits - 1)) - 1);
    EXPECT_LE((q - x).abs().max().item<double>(), step / 2 + 1e-6);
  }
  const at::Tensor leaf = x.clone().requires_grad_(true);
  fake_quantize_absmax(leaf, 4).mul(3).sum().backward();
  EXPECT_TRUE(at::allclose(leaf.grad(), at::full_like(x, 3.0)));
  EXPECT_THROW((ActivationQuant{1, 0}).check(), Error);
  EXPECT_THROW((ActivationQuant{0, 17}).check(), Error);
}

double logit_error(const Transformer& a, const Transformer& b, const at::Tensor& tokens) {
  at::NoGradGuard no_grad;
  const at::Tensor x = a.forward(tokens), y = b.forward(tokens);
  return ((x - y).norm() / y.norm()).item<double>();
}

TEST(ActivationQuant, MoreBitsStayCloserToTheFloatModel) {
  LLMPRESS_REQUIRE_SHARED("models/gutenberg-dev-llama-5m");
  const Checkpoint checkpoint = open_checkpoint(test::shared_path("models/gutenberg-dev-llama-5m"));
  const Transformer dense = Transformer::load(checkpoint);
  const at::Tensor tokens = at::randint(0, checkpoint.config.vocab_size, {2, 64});
  const auto error = [&](int act, int kv) {
    Transformer m = dense;
    m.set_activation_quant({act, kv});
    return logit_error(m, dense, tokens);
  };
  EXPECT_LT(error(16, 0), 1e-3);
  EXPECT_LT(error(0, 16), 1e-3);
  EXPECT_LT(error(8, 0), error(4, 0));
  EXPECT_LT(error(0, 8), error(0, 4));
  EXPECT_LT(error(0, 4), error(0, 2));
  EXPECT_GT(error(2, 2), 0.1);
}

TEST(SmoothQuant, KeepsTheFunctionAndBalancesActivationsAgainstWeights) {
  LLMPRESS_REQUIRE_SHARED("models/gutenberg-dev-llama-5m");
  LLMPRESS_REQUIRE_SHARED(test::kStoriesCalib);
  const Checkpoint checkpoint = open_checkpoint(test::shared_path("models/gutenberg-dev-llama-5m"));
  const Transformer dense = Transformer::load(checkpoint);
  const at::Tensor calibration = test::stories_calibration(checkpoint, 8, 64);
  Transformer smoothed = dense;  // shares the tensors; smoothing replaces them
  const SmoothQuantResult r = smooth_quant(smoothed, calibration, {0.5, 4, false});
  EXPECT_LT(r.spread_after, r.spread_before);
  EXPECT_LT(logit_error(smoothed, dense, calibration.narrow(0, 0, 2)), 1e-4);
  // alpha 0.5: max|X_j / s_j| = sqrt(max|X_j| max|W_j|) = max|W_j s_j| for every channel j.
  const std::vector<ChannelAbsmax> after = input_channel_absmax(smoothed, calibration, 4, false);
  for (size_t i = 0; i < smoothed.layers.size(); ++i) {
    const DecoderLayer& layer = smoothed.layers[i];
    const at::Tensor attention_w = at::maximum(at::maximum(layer.q_proj.weight->dense().abs().amax(0),
                                                           layer.k_proj.weight->dense().abs().amax(0)),
                                               layer.v_proj.weight->dense().abs().amax(0));
    const at::Tensor mlp_w = at::maximum(layer.gate_proj.weight->dense().abs().amax(0), layer.up_proj.weight->dense().abs().amax(0));
    EXPECT_TRUE(at::allclose(after[i].attention, attention_w, 1e-3, 1e-6)) << "layer " << i;
    EXPECT_TRUE(at::allclose(after[i].mlp, mlp_w, 1e-3, 1e-6)) << "layer " << i;
  }
  // The dense model was not changed through shared tensors.
  EXPECT_FALSE(at::equal(smoothed.layers[0].input_norm, dense.layers[0].input_norm));
  EXPECT_TRUE(at::equal(dense.layers[0].input_norm, Transformer::load(checkpoint).layers[0].input_norm));
}

}  // namespace
}  // namespace llmpress

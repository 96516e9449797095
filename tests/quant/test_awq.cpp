// AWQ: folding the scales leaves the model's function unchanged, and the scale search finds and
// removes the error an outlier input channel causes.
#include <gtest/gtest.h>

#include "calib/calib_test_util.h"
#include "llmpress/calib/engine.h"
#include "llmpress/core/error.h"
#include "llmpress/model/transformer.h"
#include "llmpress/quant/awq.h"
#include "llmpress/quant/rtn.h"

namespace llmpress {
namespace {

bool has_gqa(const ModelConfig& c) { return c.num_kv_heads > 0 && c.num_kv_heads != c.num_heads; }

void expect_folding_keeps_logits(const std::string& model) {
  const Checkpoint checkpoint = open_checkpoint(test::shared_path(model));
  Transformer transformer = Transformer::load(checkpoint);
  const at::Tensor probe = at::arange(1, 48, at::kLong).unsqueeze(0);
  const at::Tensor before = transformer.forward(probe);
  at::manual_seed(5);
  for (DecoderLayer& layer : transformer.layers)
    for (size_t group = 0; group < linear_groups().size(); ++group) {
      const int64_t in = layer.linear(linear_groups()[group].front()).weight->in_features();
      const at::Tensor scales = at::rand({in}) * 1.5 + 0.5;
      if (group == 1 && has_gqa(transformer.config)) {
        EXPECT_THROW(fold_awq_scales(layer, group, scales, transformer.config), Error);
        continue;
      }
      fold_awq_scales(layer, group, scales, transformer.config);
    }
  const at::Tensor after = transformer.forward(probe);
  EXPECT_TRUE(at::allclose(after, before, 1e-4, 1e-4)) << model << ": " << (after - before).abs().max().item<double>();
  EXPECT_FALSE(at::equal(transformer.layers[0].q_proj.weight->dense(),
                         Transformer::load(checkpoint).layers[0].q_proj.weight->dense()));
}

TEST(Awq, FoldingScalesLeavesTheLogitsUnchanged) {
  LLMPRESS_REQUIRE_SHARED(test::kStoriesModel);
  LLMPRESS_REQUIRE_SHARED("models/gutenberg-dev-llama-5m");
  expect_folding_keeps_logits(test::kStoriesModel);
  expect_folding_keeps_logits("models/gutenberg-dev-llama-5m");
}

double output_error(const at::Tensor& w, const at::Tensor& q, const at::Tensor& h) {
  const at::Tensor d = (q - w).to(at::kDouble);
  return (at::matmul(d, h) * d).sum().item<double>();
}

TEST(Awq, ScaleSearchRemovesTheErrorOfAnOutlierChannel) {
  LLMPRESS_REQUIRE_SHARED(test::kStoriesModel);
  const Checkpoint checkpoint = open_checkpoint(test::shared_path(test::kStoriesModel));
  DecoderLayer layer = Transformer::load_layer(checkpoint, 0);
  // Activations whose channel 3 is 30 times larger than the others, as in real LLMs.
  at::manual_seed(6);
  const auto outlier_stats = [](int64_t channels) {
    at::Tensor x = at::randn({4096, channels}, at::kDouble);
    x.narrow(1, 3, 1).mul_(30.0);
    InputStats stats;
    stats.tokens = x.size(0);
    stats.hessian = at::matmul(x.t(), x) / double(stats.tokens);
    stats.mean_abs = x.abs().mean(0);
    return stats;
  };
  std::vector<InputStats> group_stats;
  for (const auto& group : linear_groups()) group_stats.push_back(outlier_stats(layer.linear(group.front()).weight->in_features()));
  const InputStats& stats = group_stats[0];
  IntGridSpec grid;
  grid.bits = 3;
  grid.group_size = -1;
  const FakeQuantizer rtn = [grid](const std::string&, const at::Tensor& w) { return rtn_quantize(w, grid)->dense(); };
  AwqCompressor awq(std::make_unique<RtnCompressor>(grid), rtn);

  const at::Tensor w = layer.q_proj.weight->dense().clone();
  awq.prepare_layer(0, layer, checkpoint.config, group_stats);
  ASSERT_EQ(awq.chosen_alphas().size(), has_gqa(checkpoint.config) ? 3u : 4u);
  EXPECT_GT(awq.chosen_alphas()[0], 0.0);
  // q_proj now holds W diag(s); its quantization, scaled back, is nearer W in output error than RTN.
  const at::Tensor scaled = layer.q_proj.weight->dense();
  const at::Tensor s = std::get<0>((scaled / w).nan_to_num(1.0).median(0));  // per column: the folded scale
  const double awq_error = output_error(w, rtn_quantize(scaled, grid)->dense() / s.unsqueeze(0), stats.hessian);
  const double rtn_error = output_error(w, rtn_quantize(w, grid)->dense(), stats.hessian);
  EXPECT_LT(awq_error, 0.8 * rtn_error) << "awq " << awq_error << ", rtn " << rtn_error;
}

}  // namespace
}  // namespace llmpress

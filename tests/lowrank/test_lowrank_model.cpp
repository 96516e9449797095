// Low-rank factorization on stories260K: method ordering on real calibration activations, and
// factorized / dense checkpoints that reload exactly.
#include <gtest/gtest.h>

#include <cstdio>

#include "calib/calib_test_util.h"
#include "llmpress/calib/engine.h"
#include "llmpress/core/error.h"
#include "llmpress/export/safetensors_writer.h"
#include "llmpress/lowrank/asvd.h"
#include "llmpress/lowrank/factorized_export.h"
#include "llmpress/lowrank/low_rank_compressor.h"
#include "llmpress/lowrank/svd.h"
#include "llmpress/lowrank/svd_llm.h"
#include "llmpress/model/transformer.h"

namespace llmpress {
namespace {

// Leaves the model dense and, for every linear layer, compares the calibration output error of
// the three methods at the same rank (half the largest rank that still saves parameters).
class MethodComparison : public Compressor {
 public:
  std::string describe() const override { return "method comparison"; }
  StatsRequest needs() const override { return {true, true, 0}; }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override {
    const at::Tensor w = linear.weight->dense().to(at::kDouble);
    const int64_t out = w.size(0), in = w.size(1);
    const int64_t rank = std::max<int64_t>(1, (out * in - 1) / (out + in) / 2);
    auto error = [&](const MatrixFactorizer& f) {
      const MatrixDecomposition d = f.decompose(name, w, stats);
      const at::Tensor approx = at::matmul(d.factors(rank).first, d.factors(rank).second);
      const at::Tensor delta = w - approx;
      return (at::matmul(delta, stats.hessian) * delta).sum().item<double>() * double(stats.tokens);
    };
    const double svd = error(SvdFactorizer()), asvd = error(AsvdFactorizer(0.5)), svd_llm = error(SvdLlmFactorizer());
    EXPECT_LE(svd_llm, asvd * (1 + 1e-9)) << name;
    EXPECT_LE(svd_llm, svd * (1 + 1e-9)) << name;
    ++layers;
    if (asvd > svd) {
      ++asvd_worse;
      std::printf("note: %s rank %lld: asvd %.5g > svd %.5g (svd-llm %.5g)\n", name.c_str(), (long long)rank, asvd,
                  svd, svd_llm);
    }
    return linear.weight;
  }
  int layers = 0, asvd_worse = 0;
};

TEST(LowRankModel, SvdLlmBeatsAsvdAndSvdOnStoriesCalibration) {
  LLMPRESS_REQUIRE_SHARED(test::kStoriesModel);
  LLMPRESS_REQUIRE_SHARED(test::kStoriesCalib);
  const Checkpoint checkpoint = open_checkpoint(test::shared_path(test::kStoriesModel));
  const at::Tensor tokens = test::stories_calibration(checkpoint, 8, 64);
  const Transformer shell = Transformer::load_shell(checkpoint);
  MethodComparison comparison;
  EngineOptions options;
  options.progress = false;
  compress_sequential(checkpoint, shell, tokens, comparison, options);
  EXPECT_EQ(comparison.layers, 7 * checkpoint.config.num_layers);
  // Not a theorem: ASVD's scaling usually, but not always, helps. Reported, not asserted.
  std::printf("asvd worse than plain svd in %d of %d layers\n", comparison.asvd_worse, comparison.layers);
}

// Every tensor of `model` under its Hugging Face name; factorized linears either as factor pairs
// (into `factorized`) or multiplied out.
std::vector<NamedTensor> model_tensors(const Transformer& model, HfCheckpointOptions* factorized) {
  std::vector<NamedTensor> tensors = {{"model.embed_tokens.weight", model.embed_tokens},
                                      {"model.norm.weight", model.norm}};
  if (!model.config.tie_word_embeddings) tensors.push_back({"lm_head.weight", model.lm_head.weight->dense()});
  for (size_t i = 0; i < model.layers.size(); ++i) {
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    const DecoderLayer& layer = model.layers[i];
    tensors.push_back({prefix + "input_layernorm.weight", layer.input_norm});
    tensors.push_back({prefix + "post_attention_layernorm.weight", layer.post_attention_norm});
    for (const std::string& name : DecoderLayer::linear_names()) {
      const auto* low = dynamic_cast<const LowRankWeight*>(layer.linear(name).weight.get());
      if (low && factorized) add_factorized_layer(prefix + name, low->u()->dense(), low->v()->dense(), tensors, *factorized);
      else tensors.push_back({prefix + name + ".weight", layer.linear(name).weight->dense()});
    }
  }
  return tensors;
}

TEST(LowRankModel, FactorizedCheckpointReloadsWithIdenticalLogitsAndDenseExportIsTheProduct) {
  LLMPRESS_REQUIRE_SHARED(test::kStoriesModel);
  const Checkpoint checkpoint = open_checkpoint(test::shared_path(test::kStoriesModel));
  Transformer model = Transformer::load(checkpoint);
  RankSpec spec;
  spec.ratio = 0.5;
  spec.overrides = {{"layers\\.0\\.self_attn\\.o_proj", 0}};  // one layer stays dense
  LowRankCompressor compressor(std::make_shared<SvdFactorizer>(), spec);
  for (size_t i = 0; i < model.layers.size(); ++i)
    for (const std::string& name : DecoderLayer::linear_names()) {
      Linear& linear = model.layers[i].linear(name);
      linear.weight = compressor.compress("model.layers." + std::to_string(i) + "." + name, linear, {});
    }
  ASSERT_EQ(model.layers[0].o_proj.weight->kind(), "dense");
  ASSERT_EQ(model.layers[0].q_proj.weight->kind(), "lowrank");

  test::TempDir dir;
  HfCheckpointOptions options;
  const std::vector<NamedTensor> tensors = model_tensors(model, &options);
  options.extra_config["llmpress"] = {{"lowrank", {{"method", "svd"}}}};
  write_hf_checkpoint(dir.file("factorized"), model.config, tensors, {}, options);
  write_hf_checkpoint(dir.file("dense"), model.config, model_tensors(model, nullptr), {});

  const Checkpoint reopened = open_checkpoint(dir.file("factorized"));
  EXPECT_TRUE(reopened.has("model.layers.1.mlp.up_proj.weight_u"));
  EXPECT_FALSE(reopened.has("model.layers.1.mlp.up_proj.weight"));
  const Transformer reloaded = Transformer::load(reopened);
  const auto* low = dynamic_cast<const LowRankWeight*>(reloaded.layers[1].up_proj.weight.get());
  ASSERT_NE(low, nullptr);
  EXPECT_EQ(low->rank(), dynamic_cast<const LowRankWeight&>(*model.layers[1].up_proj.weight).rank());
  EXPECT_EQ(reloaded.parameter_count(), model.parameter_count());
  EXPECT_LT(reloaded.parameter_count(), checkpoint.config.parameter_count());

  const at::Tensor tokens = at::randint(1, model.config.vocab_size, {2, 24}, at::kLong);
  EXPECT_TRUE(at::equal(reloaded.forward(tokens), model.forward(tokens)));

  // The dense export holds exactly U V of every factorized layer.
  const Checkpoint dense = open_checkpoint(dir.file("dense"));
  for (size_t i = 0; i < model.layers.size(); ++i)
    for (const std::string& name : DecoderLayer::linear_names()) {
      const std::string full = "model.layers." + std::to_string(i) + "." + name;
      const auto& weight = model.layers[i].linear(name).weight;
      at::Tensor expected = weight->dense();
      if (const auto* f = dynamic_cast<const LowRankWeight*>(weight.get()))
        expected = at::matmul(f->u()->dense(), f->v()->dense());
      EXPECT_TRUE(at::equal(dense.load(full + ".weight"), expected)) << full;
    }
  const Transformer dense_model = Transformer::load(dense);
  EXPECT_TRUE(at::allclose(dense_model.forward(tokens), model.forward(tokens), 1e-4, 1e-4));
}

TEST(LowRankModel, BrokenFactorShapesAreAClearError) {
  LLMPRESS_REQUIRE_SHARED(test::kStoriesModel);
  const Checkpoint checkpoint = open_checkpoint(test::shared_path(test::kStoriesModel));
  const Transformer model = Transformer::load(checkpoint);
  test::TempDir dir;
  HfCheckpointOptions options;
  std::vector<NamedTensor> tensors;
  for (const NamedTensor& t : model_tensors(model, nullptr))
    if (t.name != "model.layers.0.mlp.up_proj.weight") tensors.push_back(t);
  const int64_t out = model.config.intermediate_size, in = model.config.hidden_size;
  EXPECT_THROW(add_factorized_layer("model.layers.0.mlp.up_proj", at::randn({out, 4}), at::randn({5, in}), tensors,
                                    options),
               Error);
  // A factor pair whose product has the wrong shape is refused by the writer's shape check.
  std::vector<NamedTensor> wrong = tensors;
  HfCheckpointOptions wrong_options;
  add_factorized_layer("model.layers.0.mlp.up_proj", at::randn({out, 4}), at::randn({4, in + 1}), wrong, wrong_options);
  EXPECT_THROW(write_hf_checkpoint(dir.file("bad"), model.config, wrong, {}, wrong_options), Error);

  // A file whose factors do not multiply to the config's shape is refused when opened.
  std::vector<NamedTensor> good = tensors;
  add_factorized_layer("model.layers.0.mlp.up_proj", at::randn({out, 4}), at::randn({4, in}), good, options);
  write_hf_checkpoint(dir.file("good"), model.config, good, {}, options);
  std::vector<NamedTensor> bad = tensors;
  bad.push_back({"model.layers.0.mlp.up_proj.weight_u", at::randn({out, 4})});
  bad.push_back({"model.layers.0.mlp.up_proj.weight_v", at::randn({5, in})});
  write_safetensors(dir.file("good/model.safetensors"), bad);
  try {
    open_checkpoint(dir.file("good"));
    ADD_FAILURE() << "mismatched factors were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("do not multiply"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace llmpress

// The sequential engine: exactness with a no-op compressor (outputs and the captured statistics),
// resume, NaN detection.
#include <gtest/gtest.h>

#include <filesystem>

#include "calib/calib_test_util.h"
#include "llmpress/calib/engine.h"
#include "llmpress/core/error.h"
#include "llmpress/model/observed_weight.h"
#include "llmpress/model/transformer.h"
#include "llmpress/quant/rtn.h"

namespace llmpress {
namespace {

// Changes nothing but asks for every statistic, so every capture path runs.
class IdentityCompressor : public Compressor {
 public:
  std::string describe() const override { return "identity"; }
  StatsRequest needs() const override { return {true, true, 16}; }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override {
    EXPECT_TRUE(stats.hessian.defined() && stats.sum_squares.defined() && stats.mean_abs.defined()) << name;
    EXPECT_EQ(stats.samples.size(0), 16) << name;
    EXPECT_EQ(stats.hessian.scalar_type(), at::kDouble);
    ++calls;
    return linear.weight;
  }
  int calls = 0;
};

TEST(CalibEngine, IdentityCompressorReproducesLayerOutputsExactly) {
  LLMPRESS_REQUIRE_SHARED(test::kStoriesModel);
  LLMPRESS_REQUIRE_SHARED(test::kStoriesCalib);
  const Checkpoint checkpoint = open_checkpoint(test::shared_path(test::kStoriesModel));
  const at::Tensor tokens = test::stories_calibration(checkpoint, 6, 64);
  const Transformer model = Transformer::load(checkpoint);

  for (bool sequential : {true, false}) {
    IdentityCompressor identity;
    EngineOptions options;
    options.progress = false;
    options.batch_samples = 4;
    options.true_sequential = sequential;
    std::vector<at::Tensor> outputs;
    options.on_layer = [&](int64_t, const DecoderLayer&, const at::Tensor& out) { outputs.push_back(out.clone()); };
    const EngineResult result =
        compress_sequential(checkpoint, Transformer::load_shell(checkpoint), tokens, identity, options);
    EXPECT_EQ(identity.calls, 7 * model.config.num_layers);
    ASSERT_EQ(int64_t(outputs.size()), model.config.num_layers);

    at::Tensor hidden = model.embed(tokens);
    for (int64_t i = 0; i < model.config.num_layers; ++i) {
      at::Tensor next = at::empty_like(hidden);
      for (int64_t s = 0; s < hidden.size(0); s += 4) {
        const int64_t n = std::min<int64_t>(4, hidden.size(0) - s);
        next.narrow(0, s, n).copy_(model.layers[size_t(i)].forward(hidden.narrow(0, s, n), model.config, model.rope, 0));
      }
      hidden = next;
      EXPECT_TRUE(at::equal(outputs[size_t(i)], hidden)) << "layer " << i << (sequential ? " sequential" : "");
    }
    EXPECT_TRUE(at::equal(result.final_hidden, hidden));
  }
}

// Keeps every Hessian it is given.
class HessianRecorder : public Compressor {
 public:
  std::string describe() const override { return "hessian recorder"; }
  StatsRequest needs() const override {
    StatsRequest request;
    request.hessian = true;
    return request;
  }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override {
    hessians[name] = stats.hessian.clone();
    return linear.weight;
  }
  std::map<std::string, at::Tensor> hessians;
};

// The captures stop each forward early and calibrate the MLP from the attention half's outputs; the
// statistics must still be those of every linear's input in a plain forward of the whole layer.
TEST(CalibEngine, CapturedHessiansAreThoseOfAPlainForward) {
  LLMPRESS_REQUIRE_SHARED(test::kStoriesModel);
  LLMPRESS_REQUIRE_SHARED(test::kStoriesCalib);
  const Checkpoint checkpoint = open_checkpoint(test::shared_path(test::kStoriesModel));
  const at::Tensor tokens = test::stories_calibration(checkpoint, 6, 64);
  Transformer model = Transformer::load(checkpoint);
  for (bool sequential : {true, false}) {
    HessianRecorder recorder;
    EngineOptions options;
    options.progress = false;
    options.batch_samples = 4;
    options.true_sequential = sequential;
    compress_sequential(checkpoint, Transformer::load_shell(checkpoint), tokens, recorder, options);

    at::Tensor hidden = model.embed(tokens);
    for (int64_t i = 0; i < model.config.num_layers; ++i) {
      DecoderLayer layer = model.layers[size_t(i)];
      std::map<std::string, at::Tensor> sums;
      int64_t rows = 0;
      for (const std::string& name : DecoderLayer::linear_names())
        layer.linear(name).weight = std::make_shared<ObservedWeight>(layer.linear(name).weight, [&sums, name](const at::Tensor& x) {
          const at::Tensor x64 = x.reshape({-1, x.size(-1)}).to(at::kDouble);
          const at::Tensor product = at::matmul(x64.t(), x64);
          sums[name] = sums.count(name) ? sums[name] + product : product;
        });
      at::Tensor next = at::empty_like(hidden);
      for (int64_t s = 0; s < hidden.size(0); s += 4) {
        const int64_t n = std::min<int64_t>(4, hidden.size(0) - s);
        next.narrow(0, s, n).copy_(layer.forward(hidden.narrow(0, s, n), model.config, model.rope, 0));
        rows += n * hidden.size(1);
      }
      hidden = next;
      for (const std::string& name : DecoderLayer::linear_names()) {
        const std::string full = "model.layers." + std::to_string(i) + "." + name;
        ASSERT_TRUE(recorder.hessians.count(full)) << full;
        EXPECT_TRUE(at::allclose(recorder.hessians[full], sums[name] / double(rows), 1e-12, 0))
            << full << (sequential ? " sequential" : "");
      }
    }
  }
}

// Fails at layer `fail_at` the first time, to stand for an interrupted job.
class InterruptedRtn : public RtnCompressor {
 public:
  InterruptedRtn(IntGridSpec spec, int fail_at) : RtnCompressor(spec), prefix_("model.layers." + std::to_string(fail_at) + ".") {}
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override {
    if (name.rfind(prefix_, 0) == 0) throw Error("interrupted");
    return RtnCompressor::compress(name, linear, stats);
  }

 private:
  std::string prefix_;
};

TEST(CalibEngine, ResumesFromLastFinishedLayer) {
  LLMPRESS_REQUIRE_SHARED(test::kStoriesModel);
  LLMPRESS_REQUIRE_SHARED(test::kStoriesCalib);
  const Checkpoint checkpoint = open_checkpoint(test::shared_path(test::kStoriesModel));
  const at::Tensor tokens = test::stories_calibration(checkpoint, 4, 32);
  const Transformer shell = Transformer::load_shell(checkpoint);
  IntGridSpec spec;
  spec.bits = 3;
  spec.group_size = 32;
  test::TempDir dir;

  auto collect = [](std::vector<at::Tensor>& into) {
    return [&into](int64_t, const DecoderLayer& layer, const at::Tensor&) {
      for (const std::string& name : DecoderLayer::linear_names()) {
        EXPECT_EQ(layer.linear(name).weight->kind(), "int");
        into.push_back(layer.linear(name).weight->dense().clone());
      }
    };
  };
  EngineOptions options;
  options.progress = false;
  std::vector<at::Tensor> straight;
  options.on_layer = collect(straight);
  RtnCompressor rtn(spec);
  const EngineResult reference = compress_sequential(checkpoint, shell, tokens, rtn, options);

  options.work_dir = dir.file("work");
  std::vector<at::Tensor> first, resumed;
  options.on_layer = collect(first);
  InterruptedRtn failing(spec, 3);
  EXPECT_THROW(compress_sequential(checkpoint, shell, tokens, failing, options), Error);
  EXPECT_EQ(first.size(), 3u * 7);

  options.resume = true;
  options.on_layer = collect(resumed);
  const EngineResult result = compress_sequential(checkpoint, shell, tokens, rtn, options);
  EXPECT_EQ(result.resumed_layers, 3);
  ASSERT_EQ(resumed.size(), straight.size());
  for (size_t i = 0; i < straight.size(); ++i) EXPECT_TRUE(at::equal(resumed[i], straight[i])) << i;
  EXPECT_TRUE(at::equal(result.final_hidden, reference.final_hidden));

  // Damaged saved activations: the stage is redone from its first layer, to the same result.
  std::string inputs;  // the saved activations after the last layer
  for (const auto& entry : std::filesystem::directory_iterator(dir.file("work")))
    if (entry.path().filename().string().rfind("inputs-", 0) == 0) inputs = entry.path().string();
  ASSERT_FALSE(inputs.empty());
  std::filesystem::resize_file(inputs, std::filesystem::file_size(inputs) - 5);
  std::vector<at::Tensor> redone;
  options.on_layer = collect(redone);
  const EngineResult again = compress_sequential(checkpoint, shell, tokens, rtn, options);
  EXPECT_EQ(again.resumed_layers, 0);
  ASSERT_EQ(redone.size(), straight.size());
  for (size_t i = 0; i < straight.size(); ++i) EXPECT_TRUE(at::equal(redone[i], straight[i])) << i;

  // A different method refuses the work directory instead of mixing results.
  IntGridSpec other = spec;
  other.bits = 4;
  RtnCompressor rtn4(other);
  EXPECT_THROW(compress_sequential(checkpoint, shell, tokens, rtn4, options), Error);
}

class NanCompressor : public Compressor {
 public:
  std::string describe() const override { return "nan"; }
  StatsRequest needs() const override { return {}; }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear, const InputStats&) override {
    if (name != "model.layers.1.mlp.up_proj") return linear.weight;
    return std::make_shared<DenseWeight>(linear.weight->dense() * std::numeric_limits<float>::quiet_NaN());
  }
};

TEST(CalibEngine, NanStopsTheJobNamingTheLayer) {
  LLMPRESS_REQUIRE_SHARED(test::kStoriesModel);
  LLMPRESS_REQUIRE_SHARED(test::kStoriesCalib);
  const Checkpoint checkpoint = open_checkpoint(test::shared_path(test::kStoriesModel));
  const at::Tensor tokens = test::stories_calibration(checkpoint, 2, 16);
  NanCompressor nan;
  EngineOptions options;
  options.progress = false;
  try {
    compress_sequential(checkpoint, Transformer::load_shell(checkpoint), tokens, nan, options);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.1.mlp.up_proj"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace llmpress

// AWQ: folding the scales leaves the model's function unchanged, and the scale search finds and
// removes the error an outlier input channel causes. The clipping search: on real activations it
// never raises any (row, group)'s output error, its choices agree with a PyTorch reimplementation of
// the reference's auto_clip_layer (awq_clip_reference.py, Debian's python3-torch), and clip: false
// compresses exactly as the scales alone did.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <map>
#include <tuple>

#include <nlohmann/json.hpp>

#include "calib/calib_test_util.h"
#include "llmpress/calib/engine.h"
#include "llmpress/core/error.h"
#include "llmpress/model/transformer.h"
#include "llmpress/pipeline/method.h"
#include "llmpress/quant/awq.h"
#include "llmpress/quant/rtn.h"
#include "torch_reference.h"

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

// --- Clipping ---------------------------------------------------------------------------------

const char* kGutenbergModel = "models/gutenberg-dev-llama-5m";
const char* kGutenbergCalib = "data/gutenberg-dev-calib.txt";

IntGridSpec int_grid(int bits, int64_t group) {
  IntGridSpec grid;
  grid.bits = bits;
  grid.group_size = group;
  return grid;
}

FakeQuantizer rtn_fake(const IntGridSpec& grid) {
  return [grid](const std::string&, const at::Tensor& w) { return rtn_quantize(w, grid)->dense(); };
}

// Per (row, group) of `group` columns: d_g H_gg d_g^T with d = q - w, [rows, groups] float64,
// computed group by group (independently of awq.cpp's batched blocks).
at::Tensor block_errors(const at::Tensor& w, const at::Tensor& q, const at::Tensor& h, int64_t group) {
  const at::Tensor d = (q - w).to(at::kDouble);
  const int64_t cols = w.size(1), g = group > 0 ? group : cols;
  std::vector<at::Tensor> out;
  for (int64_t start = 0; start < cols; start += g) {
    const int64_t width = std::min(g, cols - start);
    const at::Tensor dg = d.narrow(1, start, width);
    out.push_back((at::matmul(dg, h.narrow(0, start, width).narrow(1, start, width)) * dg).sum(1));
  }
  return at::stack(out, 1);
}

// What AWQ did to one linear layer of a real model: the weight it received (scales folded), the
// Hessian of its inputs, its compression, and RTN's of the same weight.
struct SeenLinear {
  std::string name;
  at::Tensor weight, hessian, compressed, rtn;
};

// An AwqCompressor (inner RTN) that records every linear layer it compresses.
class RecordingAwq : public Compressor {
 public:
  RecordingAwq(const IntGridSpec& grid, bool clip) : grid_(grid), awq_(std::make_unique<RtnCompressor>(grid), rtn_fake(grid), options(grid, clip)) {}
  std::string describe() const override { return awq_.describe(); }
  StatsRequest needs() const override { return awq_.needs(); }
  bool prepares_layers() const override { return true; }
  void prepare_layer(int64_t index, DecoderLayer& layer, const ModelConfig& config,
                     const std::vector<InputStats>& group_stats) override {
    awq_.prepare_layer(index, layer, config, group_stats);
  }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override {
    std::shared_ptr<LinearWeight> out = awq_.compress(name, linear, stats);
    RtnCompressor rtn(grid_);
    seen.push_back({name, linear.weight->dense().clone(), stats.hessian.clone(), out->dense(),
                    rtn.compress(name, linear, stats)->dense()});
    return out;
  }
  static AwqOptions options(const IntGridSpec& grid, bool clip) {
    AwqOptions o;
    o.clip = clip;
    o.clip_group = grid.group_size;
    return o;
  }

  std::vector<SeenLinear> seen;
  const IntGridSpec grid_;
  AwqCompressor awq_;
};

// The first kLayers layers of a checkpoint, as a model of its own (to keep the tests short).
constexpr int64_t kLayers = 3;
class FirstLayers : public LayerSource {
 public:
  explicit FirstLayers(const Checkpoint& checkpoint) : checkpoint_(checkpoint), config_(checkpoint.config) {
    config_.num_layers = kLayers;
  }
  const ModelConfig& config() const override { return config_; }
  Transformer load_shell(const at::Device& device) const override {
    Transformer shell = Transformer::load_shell(checkpoint_, device);
    shell.config = config_;
    shell.layers.resize(kLayers);
    return shell;
  }
  DecoderLayer load_layer(int64_t index, const at::Device& device) const override {
    return Transformer::load_layer(checkpoint_, index, device);
  }
  std::string identity() const override { return "first layers"; }

 private:
  const Checkpoint& checkpoint_;
  ModelConfig config_;
};

// AWQ over the first layers of gutenberg-dev-llama-5m on 8 windows of 128 tokens of its calibration
// text; each (grid, clip) runs once for all the tests.
const RecordingAwq& awq_run(int bits, int64_t group, bool clip) {
  static std::map<std::tuple<int, int64_t, bool>, std::unique_ptr<RecordingAwq>> runs;
  auto& run = runs[{bits, group, clip}];
  if (!run) {
    const Checkpoint checkpoint = open_checkpoint(test::shared_path(kGutenbergModel));
    const auto tokenizer = load_tokenizer(checkpoint);
    CalibrationOptions calibration;
    calibration.nsamples = 8;
    calibration.seqlen = 128;
    calibration.seed = 0;
    const at::Tensor tokens =
        calibration_windows(tokenizer->encode(read_text_file(test::shared_path(kGutenbergCalib)).substr(0, 60000)),
                            calibration, checkpoint.config.max_position_embeddings);
    run = std::make_unique<RecordingAwq>(int_grid(bits, group), clip);
    EngineOptions engine;
    engine.progress = false;
    const FirstLayers source(checkpoint);
    compress_sequential(source, source.load_shell(at::kCPU), tokens, *run, engine);
  }
  return *run;
}

bool bit_identical(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.cpu().contiguous(), y = b.cpu().contiguous();
  return x.sizes() == y.sizes() && x.scalar_type() == y.scalar_type() &&
         std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

// Ratio 1 is a candidate and clamping to it changes nothing, so no (row, group) ends up worse than
// RTN of the unclipped weight; q_proj and k_proj are left alone.
TEST(AwqClip, NeverRaisesTheBlockOutputErrorOfAnyLinearOnRealActivations) {
  LLMPRESS_REQUIRE_SHARED(kGutenbergModel);
  LLMPRESS_REQUIRE_SHARED(kGutenbergCalib);
  for (const auto& [bits, group] : std::vector<std::pair<int, int64_t>>{{4, 128}, {3, 32}}) {
    SCOPED_TRACE("int" + std::to_string(bits) + " g" + std::to_string(group));
    const RecordingAwq& run = awq_run(bits, group, true);
    ASSERT_EQ(run.seen.size(), 7u * kLayers);
    EXPECT_NE(run.describe().find("clip"), std::string::npos);
    double clipped_total = 0, rtn_total = 0;
    for (const SeenLinear& l : run.seen) {
      SCOPED_TRACE(l.name);
      if (!awq_clips(l.name)) {
        EXPECT_TRUE(bit_identical(l.compressed, l.rtn));
        continue;
      }
      const at::Tensor clipped = block_errors(l.weight, l.compressed, l.hessian, group);
      const at::Tensor rtn = block_errors(l.weight, l.rtn, l.hessian, group);
      // The search's error sums run in another order than ours: allow a rounding's worth.
      EXPECT_TRUE((clipped <= rtn * (1 + 1e-9) + 1e-300).all().item<bool>())
          << "worst excess " << (clipped - rtn).max().item<double>();
      clipped_total += clipped.sum().item<double>();
      rtn_total += rtn.sum().item<double>();
    }
    EXPECT_LT(clipped_total, 0.99 * rtn_total);  // and it does clip
    EXPECT_EQ(run.awq_.clipped_linears(), 5 * kLayers);
    EXPECT_LT(run.awq_.mean_clip_ratio(), 1.0);
    EXPECT_GT(run.awq_.mean_clip_ratio(), 0.55);
    std::printf("[ awq clip int%d g%lld ] block output error %.4g -> %.4g (%.1f%% less); mean ratio %.4f, %.1f%% of "
                "(row, group)s clipped\n",
                bits, (long long)group, rtn_total, clipped_total, 100 * (1 - clipped_total / rtn_total),
                run.awq_.mean_clip_ratio(), 100 * run.awq_.clipped_fraction());
  }
}

// The same weights and Hessians through awq_clip_reference.py (the reference's loop on input
// features made from the Hessian, our fake quantizer in PyTorch). The choices may differ only where
// two candidate ratios give the same error to rounding (the two error sums run in different orders).
TEST(AwqClip, ChoosesTheRatiosOfAPyTorchReimplementationOfTheReference) {
  LLMPRESS_REQUIRE_SHARED(kGutenbergModel);
  LLMPRESS_REQUIRE_SHARED(kGutenbergCalib);
  const std::string why = test::torch_reference_unavailable();
  if (!why.empty()) GTEST_SKIP() << "PyTorch reference unavailable: " << why << " (scripts/setup.sh installs python3-torch)";
  const int bits = 4;
  const int64_t group = 128;
  const IntGridSpec grid = int_grid(bits, group);
  const RecordingAwq& run = awq_run(bits, group, true);
  const AwqOptions options = RecordingAwq::options(grid, true);
  test::TempDir dir;
  nlohmann::json spec = {{"bits", bits}, {"group", group}, {"sym", false}, {"n_grid", options.clip_grid},
                         {"max_shrink", options.clip_max_shrink}, {"cases", nlohmann::json::array()}};
  std::vector<const SeenLinear*> cases;
  for (const SeenLinear& l : run.seen)
    if (awq_clips(l.name) && (l.name.rfind("model.layers.1.", 0) == 0 || l.name == "model.layers.2.mlp.down_proj"))
      cases.push_back(&l);
  ASSERT_EQ(cases.size(), 6u);
  const auto dump = [&](const std::string& file, const at::Tensor& t) {
    const at::Tensor c = t.cpu().contiguous();
    std::ofstream(dir.file(file), std::ios::binary).write(static_cast<const char*>(c.data_ptr()), std::streamsize(c.nbytes()));
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    const std::string name = "case" + std::to_string(k);
    dump(name + "_weight.bin", cases[k]->weight.to(at::kFloat));
    dump(name + "_hessian.bin", cases[k]->hessian.to(at::kDouble));
    spec["cases"].push_back({{"name", name}, {"rows", cases[k]->weight.size(0)}, {"cols", cases[k]->weight.size(1)}});
  }
  std::ofstream(dir.file("case.json")) << spec.dump();
  const std::string script = (std::filesystem::path(__FILE__).parent_path() / "awq_clip_reference.py").string();
  ASSERT_EQ(std::system((test::torch_python() + " " + script + " " + dir.path()).c_str()), 0);

  int64_t total = 0, differ = 0;
  for (size_t k = 0; k < cases.size(); ++k) {
    const SeenLinear& l = *cases[k];
    SCOPED_TRACE(l.name);
    const AwqClip ours = search_awq_clip(l.name, l.weight, l.hessian, rtn_fake(grid), options);
    // What the AwqCompressor handed RTN was this clip.
    EXPECT_TRUE(bit_identical(rtn_quantize(ours.weight, grid)->dense(), l.compressed));
    const int64_t rows = ours.ratios.size(0), groups = ours.ratios.size(1);
    const auto read = [&](const std::string& file, at::ScalarType type) {
      at::Tensor t = at::empty({rows, groups}, type);
      std::ifstream(dir.file("case" + std::to_string(k) + file), std::ios::binary)
          .read(static_cast<char*>(t.data_ptr()), std::streamsize(t.nbytes()));
      return t;
    };
    const at::Tensor their_steps = read("_steps.bin", at::kInt).to(at::kLong);
    const at::Tensor their_errors = read("_errors.bin", at::kDouble) * double(group);  // they average over group tokens
    const at::Tensor our_steps = ((1 - ours.ratios.to(at::kDouble)) * options.clip_grid).round().to(at::kLong);
    // Our error at the chosen ratio is theirs.
    const at::Tensor our_errors = block_errors(l.weight, rtn_quantize(ours.weight, grid)->dense(), l.hessian, group);
    EXPECT_TRUE(at::allclose(our_errors, their_errors, 1e-6, 1e-30));
    const at::Tensor mismatch = our_steps != their_steps;
    total += mismatch.numel();
    differ += mismatch.sum().item<int64_t>();
    // Where the choices differ, the two ratios' errors are equal to rounding.
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < groups; ++g) {
        if (!mismatch[r][g].item<bool>()) continue;
        const double theirs = their_errors[r][g].item<double>();
        const double ours_error = our_errors[r][g].item<double>();
        EXPECT_NEAR(ours_error, theirs, 1e-9 * std::max(ours_error, theirs))
            << "row " << r << " group " << g << ": step " << our_steps[r][g].item<int64_t>() << " vs "
            << their_steps[r][g].item<int64_t>();
      }
  }
  EXPECT_LE(differ * 1000, total) << differ << " of " << total << " (row, group)s chose another ratio";
  std::printf("[ awq clip vs reference ] %lld of %lld (row, group)s chose another ratio (ties)\n", (long long)differ,
              (long long)total);
}

// clip: false is the scales alone: every linear is exactly what the inner compressor makes of the
// scaled weight, and the method's description (the resume fingerprint) is today's. The stage option
// reaches the compressor.
TEST(AwqClip, ClipFalseIsTheScalesAloneBitForBit) {
  LLMPRESS_REQUIRE_SHARED(kGutenbergModel);
  LLMPRESS_REQUIRE_SHARED(kGutenbergCalib);
  const RecordingAwq& run = awq_run(4, 128, false);
  ASSERT_EQ(run.seen.size(), 7u * kLayers);
  for (const SeenLinear& l : run.seen) EXPECT_TRUE(bit_identical(l.compressed, l.rtn)) << l.name;
  EXPECT_EQ(run.describe(), "awq + " + RtnCompressor(int_grid(4, 128)).describe());
  EXPECT_EQ(run.awq_.clipped_linears(), 0);

  const Checkpoint checkpoint = open_checkpoint(test::shared_path(kGutenbergModel));
  const CheckpointSource source(checkpoint);
  const at::Tensor no_tokens = at::zeros({0, 1}, at::kLong);
  std::vector<std::string> notes;
  const StageContext context{source, checkpoint.config, checkpoint, no_tokens, at::kCPU, 8, false, &notes, ""};
  for (const char* method : {"awq", "awq-gptq"}) {
    const MethodSpec& spec = find_method(method);
    StageSpec stage;
    stage.method = method;
    const std::string clipped = spec.compressor(StageOptions(spec, stage), context)->describe();
    stage.options["clip"] = false;
    const std::string plain = spec.compressor(StageOptions(spec, stage), context)->describe();
    EXPECT_NE(clipped.find("awq + clip + "), std::string::npos) << clipped;
    EXPECT_EQ(plain.find("clip"), std::string::npos) << plain;
  }
}

}  // namespace
}  // namespace llmpress

// Fake-quant weights (quant/fake_quant.h): they start exactly at the quantized weight they wrap; whatever
// training does to the latent and the parameters, the exported weight decodes (ggml's decoders, the GPTQ
// grid) to the training forward's values bit for bit, for every ggml type with a block grid and for
// integer grids; the straight-through gradients; values and gradients against PyTorch autograd on the
// same formula (fake_quant_reference.py, Debian's python3-torch); a trainer run at learning rate 0 leaves
// the PTQ weights unchanged.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "llmpress/export/ggml_quantize.h"
#include "llmpress/quant/fake_quant.h"
#include "llmpress/quant/ggml_block_header.h"
#include "llmpress/quant/ggml_codes.h"
#include "llmpress/quant/ggml_weight.h"
#include "llmpress/quant/rtn.h"
#include "llmpress/train/parameters.h"
#include "llmpress/train/trainer.h"
#include "test_util.h"
#include "torch_reference.h"

namespace llmpress {
namespace {

const std::vector<TensorType> kGridTypes = {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1,
                                            TensorType::Q8_0, TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K,
                                            TensorType::Q5_K, TensorType::Q6_K};

// Same shape and the same bits (so -0 and +0 differ, and NaN equals NaN).
::testing::AssertionResult bit_identical(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.detach().cpu().to(at::kFloat).contiguous(), y = b.detach().cpu().to(at::kFloat).contiguous();
  if (x.sizes() != y.sizes()) return ::testing::AssertionFailure() << "shapes differ";
  if (std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0) return ::testing::AssertionSuccess();
  const int64_t differ = (x.view(at::kInt) != y.view(at::kInt)).sum().item<int64_t>();
  return ::testing::AssertionFailure() << differ << " of " << x.numel() << " values differ, max |diff| "
                                       << (x - y).abs().max().item<double>();
}

at::Tensor random_weight(int64_t rows, int64_t cols, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  at::Tensor w = at::randn({rows, cols}, gen) * 0.05;
  w.index_put_({0, at::indexing::Slice(0, 3)}, at::tensor({0.9f, -1.1f, 0.0f}));  // outliers and an exact zero
  return w;
}

std::vector<std::shared_ptr<LinearWeight>> int_weights() {
  const at::Tensor w = random_weight(6, 128, 3);
  std::vector<std::shared_ptr<LinearWeight>> out;
  for (const auto& [bits, sym, group] : std::vector<std::tuple<int, bool, int64_t>>{
           {2, false, 64}, {3, false, 32}, {4, true, 32}, {4, false, -1}, {8, false, 128}}) {
    IntGridSpec spec;
    spec.bits = bits;
    spec.symmetric = sym;
    spec.group_size = group;
    out.push_back(rtn_quantize(w, spec));
  }
  // act-order: the groups follow a permutation of the columns (an arbitrary g_idx).
  IntGridSpec spec;
  spec.group_size = 64;
  const auto q = rtn_quantize(w, spec);
  const at::Tensor g_idx = at::randperm(128, at::kLong).floor_divide(64).to(at::kInt);
  out.push_back(std::make_shared<QuantizedWeight>(q->codes(), at::rand({6, 2}).add(0.01).to(at::kHalf),
                                                  q->zeros().index({at::indexing::Slice(), at::indexing::Slice(0, 2)}),
                                                  g_idx, spec, true));
  return out;
}

// Moves every parameter well away from where it started, including out of its range.
void perturb(const FakeQuantWeight& fake, uint64_t seed) {
  at::NoGradGuard no_grad;
  at::Generator gen = at::detail::createCPUGenerator(seed);
  for (const TrainableTensor& t : fake.trainable()) {
    const at::Tensor noise = at::randn(t.tensor.sizes(), gen);
    if (t.suffix.empty()) t.tensor.add_(noise * t.tensor.std() * 0.3);
    else if (t.suffix == "_qscale" || t.suffix == "_qmin") t.tensor.mul_(1 + noise * 0.05);
    else if (t.suffix == "_qzero") t.tensor.add_(noise * 3);  // in code units: many leave their range
    else t.tensor.add_(noise * 0.5);  // sub-block scales and mins, relative to where they started
  }
}

TEST(FakeQuant, EveryGgmlTypeStartsAtItsBlocksAndExportsItsForwardBitForBit) {
  const at::Tensor w = random_weight(4, 512, 1);
  for (TensorType type : kGridTypes) {
    SCOPED_TRACE(tensor_type_name(type));
    const auto blocks = GgmlWeight::encode(w, type);
    const auto fake = FakeQuantWeight::wrap(*blocks);
    EXPECT_TRUE(bit_identical(fake->values(), blocks->dense()));
    EXPECT_EQ(fake->storage_bits(), blocks->storage_bits());
    perturb(*fake, 7);
    {  // a block whose scale is exactly zero: every value is its offset
      at::NoGradGuard no_grad;
      fake->trainable()[1].tensor[1][0] = 0.0f;
    }
    const at::Tensor trained = fake->values();
    EXPECT_FALSE(bit_identical(trained, blocks->dense()));
    const auto exported = std::dynamic_pointer_cast<GgmlWeight>(fake->exported());
    ASSERT_TRUE(exported);
    EXPECT_EQ(exported->type(), type);
    // Decoded with the ggml decoder straight from the bytes, not through any of our caches.
    const at::Tensor bytes = exported->bytes();
    at::Tensor decoded = at::empty({4, 512});
    decode_to_f32(type, bytes.data_ptr<uint8_t>(), decoded.numel(), decoded.data_ptr<float>());
    EXPECT_TRUE(bit_identical(decoded, trained));
    // Wrapping the export again starts where training ended.
    EXPECT_TRUE(bit_identical(FakeQuantWeight::wrap(*exported)->values(), trained));
  }
}

// With fixed codes (PEQA, E2E-QP) only the parameters train: the export keeps every code and still
// decodes to the training forward.
TEST(FakeQuant, FixedCodesKeepEveryCodeAndExportTheirForwardBitForBit) {
  const at::Tensor w = random_weight(4, 512, 2);
  for (TensorType type : kGridTypes) {
    SCOPED_TRACE(tensor_type_name(type));
    const auto blocks = GgmlWeight::encode(w, type);
    const auto fake = FakeQuantWeight::wrap(*blocks, {true, {}});
    EXPECT_TRUE(bit_identical(fake->values(), blocks->dense()));
    for (const TrainableTensor& t : fake->trainable()) EXPECT_FALSE(t.suffix.empty());  // no latent trains
    perturb(*fake, 8);
    const auto exported = std::dynamic_pointer_cast<GgmlWeight>(fake->exported());
    ASSERT_TRUE(exported);
    EXPECT_TRUE(bit_identical(exported->dense(), fake->values()));
    const int64_t bytes = tensor_type_info(type).block_bytes, n = tensor_type_info(type).block_elements;
    for (int64_t b = 0; b < blocks->bytes().numel() / bytes; ++b)
      for (int e = 0; e < int(n); ++e)
        ASSERT_EQ(read_block_code(type, blocks->bytes().data_ptr<uint8_t>() + b * bytes, e),
                  read_block_code(type, exported->bytes().data_ptr<uint8_t>() + b * bytes, e));
  }
  const auto q = int_weights().front();
  const auto fake = FakeQuantWeight::wrap(*q, {true, {}});
  perturb(*fake, 9);
  const auto exported = std::dynamic_pointer_cast<QuantizedWeight>(fake->exported());
  EXPECT_TRUE(at::equal(exported->codes(), dynamic_cast<const QuantizedWeight&>(*q).codes()));
  EXPECT_TRUE(bit_identical(exported->dense(), fake->values()));
}

TEST(FakeQuant, IntegerGridsStartAtTheirCodesAndExportTheirForwardBitForBit) {
  for (const auto& q : int_weights()) {
    const auto& spec = dynamic_cast<const QuantizedWeight&>(*q);
    SCOPED_TRACE(spec.spec().describe() + (spec.act_order() ? " act-order" : ""));
    const auto fake = FakeQuantWeight::wrap(*q);
    EXPECT_TRUE(bit_identical(fake->values(), q->dense()));
    EXPECT_EQ(fake->storage_bits(), q->storage_bits());
    perturb(*fake, 11);
    const at::Tensor trained = fake->values();
    const auto exported = std::dynamic_pointer_cast<QuantizedWeight>(fake->exported());
    ASSERT_TRUE(exported);
    EXPECT_EQ(exported->scales().scalar_type(), at::kHalf);
    EXPECT_TRUE(bit_identical(exported->dense(), trained));
    EXPECT_TRUE(at::equal(exported->g_idx(), spec.g_idx()));
  }
}

TEST(FakeQuant, SavedAndRestoredItIsTheSameWeight) {
  std::vector<std::shared_ptr<LinearWeight>> sources = int_weights();
  sources.push_back(GgmlWeight::encode(random_weight(2, 256, 4), TensorType::Q3_K));
  sources.push_back(GgmlWeight::encode(random_weight(2, 64, 4), TensorType::Q5_1));
  for (const auto& source : sources) {
    const auto fake = FakeQuantWeight::wrap(*source);
    perturb(*fake, 5);
    const auto restored = restore_weight(fake->save());
    EXPECT_EQ(restored->kind(), "fake-quant");
    EXPECT_TRUE(bit_identical(restored->dense(), fake->dense()));
    EXPECT_EQ(restored->trainable().size(), fake->trainable().size());
  }
}

// d sum(values * g) / d latent is g where the unclamped code is inside the format's range (to float32
// rounding: autograd computes (g * s) / s), else exactly 0.
TEST(FakeQuant, StraightThroughGradientIsIdentityInsideTheRangeAndZeroOutside) {
  IntGridSpec spec;
  spec.bits = 3;
  spec.group_size = 32;
  const at::Tensor w = random_weight(4, 64, 9);
  const auto fake = FakeQuantWeight::wrap(*rtn_quantize(w, spec));
  {  // push some latent values far outside the grid's range
    at::NoGradGuard no_grad;
    fake->trainable()[0].tensor.index({at::indexing::Slice(), at::indexing::Slice(0, 64, 5)}).mul_(6);
  }
  for (const TrainableTensor& t : fake->trainable()) t.tensor.requires_grad_(true);
  const at::Tensor upstream = at::randn({4, 64});
  (fake->values() * upstream).sum().backward();
  const auto params = fake->trainable();
  const at::Tensor latent = params[0].tensor.detach();
  const at::Tensor scale = fake->parts().scale.effective().detach().to(at::kHalf).to(at::kFloat);
  const at::Tensor zero = params[2].tensor.detach().round();
  const at::Tensor group = at::arange(64).floor_divide(32);
  const at::Tensor pre = at::round(latent / scale.index_select(1, group)) + zero.index_select(1, group);
  const at::Tensor inside = (pre >= 0) & (pre <= spec.max_code());
  EXPECT_GT((~inside).sum().item<int64_t>(), 0);
  EXPECT_GT(inside.sum().item<int64_t>(), 0);
  const at::Tensor grad = params[0].tensor.grad();
  EXPECT_TRUE(at::allclose(grad, at::where(inside, upstream, at::zeros_like(upstream)), 1e-6, 0));
  EXPECT_TRUE(at::equal(grad.masked_select(~inside), at::zeros({(~inside).sum().item<int64_t>()})));
}

// Against PyTorch autograd on the same formula: values bit for bit, gradients of every input to float32
// rounding (the reduction orders differ).
class FakeQuantReference : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = test::torch_reference_unavailable();
    if (!why.empty()) GTEST_SKIP() << "PyTorch reference unavailable: " << why << " (scripts/setup.sh installs python3-torch)";
  }

  void check(const FakeQuantWeight& fake, nlohmann::json spec, const std::vector<std::string>& names) {
    test::TempDir dir;
    const auto params = fake.trainable();
    const at::Tensor upstream = at::randn({fake.out_features(), fake.in_features()});
    const auto dump = [&](const std::string& name, const at::Tensor& t) {
      const at::Tensor c = t.detach().cpu().to(at::kFloat).contiguous();
      std::ofstream(dir.file(name + ".bin"), std::ios::binary).write(static_cast<const char*>(c.data_ptr()), std::streamsize(c.nbytes()));
      spec["tensors"][name] = c.sizes().vec();
    };
    for (size_t i = 0; i < names.size(); ++i) dump(names[i], params[i].tensor);
    const auto& parts = fake.parts();
    const std::pair<const char*, const FakeQuantWeight::Learned*> learned[] = {
        {"scale", &parts.scale}, {"zero", &parts.zero_or_min}, {"min", &parts.zero_or_min},
        {"sub_scale", &parts.sub_scale}, {"sub_min", &parts.sub_min}};
    for (const auto& [name, l] : learned)
      if (std::find(names.begin(), names.end(), name) != names.end() && l->unit.defined())
        dump(std::string(name) + "_unit", l->unit);
    dump("upstream", upstream);
    std::ofstream(dir.file("case.json")) << spec.dump();
    const std::string script = (std::filesystem::path(__FILE__).parent_path() / "fake_quant_reference.py").string();
    ASSERT_EQ(std::system((test::torch_python() + " " + script + " " + dir.path()).c_str()), 0);
    const auto read = [&](const std::string& name, at::IntArrayRef shape) {
      at::Tensor t = at::empty(shape);
      std::ifstream(dir.file("out_" + name + ".bin"), std::ios::binary).read(static_cast<char*>(t.data_ptr()), std::streamsize(t.nbytes()));
      return t;
    };
    for (const TrainableTensor& t : params) t.tensor.requires_grad_(true);
    const at::Tensor values = fake.values();
    (values * upstream).sum().backward();
    EXPECT_TRUE(bit_identical(values, read("values", values.sizes())));
    for (size_t i = 0; i < names.size(); ++i) {
      SCOPED_TRACE(names[i]);
      const at::Tensor ours = params[i].tensor.grad(), theirs = read(names[i], ours.sizes());
      const double scale = std::max(theirs.abs().max().item<double>(), 1e-12);
      EXPECT_LT((ours - theirs).abs().max().item<double>() / scale, 1e-5);
      EXPECT_GT(theirs.abs().sum().item<double>(), 0);  // every parameter gets a gradient
    }
  }
};

TEST_F(FakeQuantReference, IntegerGridLsqGradientsMatchPyTorch) {
  IntGridSpec spec;
  spec.bits = 3;
  spec.group_size = 32;
  const auto fake = FakeQuantWeight::wrap(*rtn_quantize(random_weight(5, 96, 12), spec));
  perturb(*fake, 13);
  check(*fake, {{"format", "int"}, {"bits", 3}, {"group", 32}}, {"latent", "scale", "zero"});
}

TEST_F(FakeQuantReference, KQuantScaleAndMinGradientsMatchPyTorch) {
  for (TensorType type : {TensorType::Q2_K, TensorType::Q4_K, TensorType::Q5_K}) {
    SCOPED_TRACE(tensor_type_name(type));
    const BlockGrid& grid = block_grid(type);
    const auto fake = FakeQuantWeight::wrap(*GgmlWeight::encode(random_weight(3, 512, 14), type));
    perturb(*fake, 15);
    check(*fake, {{"format", "kquant"}, {"scale_max", grid.scale_max}, {"min_max", grid.min_max}, {"code_max", grid.code_max}},
          {"latent", "scale", "sub_scale", "min", "sub_min"});
  }
}

// A training run at learning rate 0 changes nothing: the export is the PTQ weight.
TEST(FakeQuant, TrainingAtLearningRateZeroKeepsThePtqWeights) {
  ModelConfig c;
  c.vocab_size = 40;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_layers = 1;
  c.num_heads = 2;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  Transformer model = random_model(c, 0.2, 3);
  std::vector<at::Tensor> ptq;
  for (const std::string& name : DecoderLayer::linear_names()) {
    Linear& linear = model.layers[0].linear(name);
    linear.weight = GgmlWeight::encode(linear.weight->dense(), name == "mlp.down_proj" ? TensorType::Q4_1 : TensorType::Q4_0);
    ptq.push_back(linear.weight->dense().clone());
  }
  EXPECT_EQ(wrap_fake_quant(model), 7);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 400; ++i) tokens.push_back((i * 7 + i / 3) % 40);
  TrainOptions o;
  o.steps = 3;
  o.batch_size = 2;
  o.lr = 0;
  o.progress = false;
  const TrainResult result = train(model, TrainingData::from_tokens(tokens, 16), cross_entropy_loss(model, false), o);
  EXPECT_EQ(result.losses.size(), 3u);
  EXPECT_EQ(export_fake_quant(model), 7);
  for (size_t i = 0; i < ptq.size(); ++i) EXPECT_TRUE(bit_identical(model.layers[0].linear(DecoderLayer::linear_names()[i]).weight->dense(), ptq[i]));
}

}  // namespace
}  // namespace llmpress

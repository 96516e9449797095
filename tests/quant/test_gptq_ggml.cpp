// Format-aware GPTQ onto ggml block types: the code layouts against ggml's decoders, GPTQ with an
// identity Hessian is round-to-nearest on the fitted blocks, GPTQ beats imatrix-weighted RTN on
// real activations, and `quantize --format gguf` writes exactly the model it computed.
#include <gtest/gtest.h>

#include <cmath>

#include "calib/calib_test_util.h"
#include "cli/cli_test_util.h"
#include "llmpress/calib/engine.h"
#include "llmpress/core/error.h"
#include "llmpress/data/calibration.h"
#include "llmpress/data/text.h"
#include "llmpress/export/ggml_quantize.h"
#include "llmpress/model/transformer.h"
#include "llmpress/quant/ggml_codes.h"
#include "llmpress/quant/ggml_rtn.h"
#include "llmpress/quant/gptq_ggml.h"

namespace llmpress {
namespace {

const TensorType kBlockTypes[] = {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1,
                                  TensorType::Q8_0, TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K,
                                  TensorType::Q5_K, TensorType::Q6_K, TensorType::IQ4_NL, TensorType::IQ4_XS};

// Rows with the awkward cases: all zero, constant, one huge outlier, negative only.
at::Tensor awkward_rows(int64_t cols) {
  at::manual_seed(7);
  at::Tensor w = at::randn({6, cols});
  w[0].zero_();
  w[1].fill_(0.25);
  w[2][3] = 40.0;
  w[3] = -w[3].abs();
  return w;
}

std::vector<float> decode(TensorType type, const std::vector<uint8_t>& bytes, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  decode_to_f32(type, bytes.data(), n, out.data());
  return out;
}

TEST(GgmlCodes, LayoutsAgreeWithTheDecoders) {
  for (TensorType type : kBlockTypes) {
    const GgmlEncoding& enc = ggml_encoding(type);
    const int64_t n = 2 * enc.block_elements;
    const at::Tensor w = awkward_rows(n);
    for (int64_t r = 0; r < w.size(0); ++r) {
      const at::Tensor row = w[r].contiguous();
      const std::vector<uint8_t> bytes = encode_rows(type, row.data_ptr<float>(), n, 1);
      const std::vector<float> values = decode(type, bytes, n);
      std::vector<uint8_t> rewritten = bytes;
      const BlockCodeRange range = block_code_range(type);
      const std::vector<float> levels = block_code_levels(type);
      for (int64_t b = 0; b < 2; ++b) {
        const uint8_t* block = bytes.data() + b * enc.block_bytes;
        std::vector<float> scale(size_t(enc.block_elements)), offset(size_t(enc.block_elements));
        block_affine_grid(type, block, scale.data(), offset.data());
        for (int64_t e = 0; e < enc.block_elements; ++e) {
          const int code = read_block_code(type, block, int(e));
          EXPECT_GE(code, range.min_code - (type == TensorType::Q8_0 ? 1 : 0));
          EXPECT_LE(code, range.max_code);
          const float v = values[size_t(b * enc.block_elements + e)];
          const float level = levels[size_t(code - range.min_code)];
          EXPECT_NEAR(scale[size_t(e)] * level + offset[size_t(e)], v, 1e-5f * (1.0f + std::fabs(v)))
              << enc.name << " row " << r << " element " << e;
          write_block_code(type, rewritten.data() + b * enc.block_bytes, int(e), range.max_code);
        }
        for (int64_t e = 0; e < enc.block_elements; ++e)
          write_block_code(type, rewritten.data() + b * enc.block_bytes, int(e), read_block_code(type, block, int(e)));
      }
      EXPECT_EQ(rewritten, bytes) << enc.name << ": writing back every code must restore the block";
    }
  }
}

TEST(GptqGgml, IdentityHessianIsRoundToNearestOnTheFittedBlocks) {
  for (TensorType type : kBlockTypes) {
    const GgmlEncoding& enc = ggml_encoding(type);
    const int64_t cols = 2 * enc.block_elements;
    const at::Tensor w = awkward_rows(cols);
    GptqOptions options;
    options.block_size = 16;  // rounded up to whole blocks
    const auto q = gptq_ggml_quantize(w, at::eye(cols, at::kDouble), type, options);
    const at::Tensor bytes = q->bytes();
    const int64_t row_bytes = bytes.size(1);
    const BlockCodeRange range = block_code_range(type);
    // Brute force over every code with ggml's decoder: no code of the block's grid is nearer.
    for (int64_t r = 0; r < w.size(0); ++r)
      for (int64_t b = 0; b < 2; ++b) {
        std::vector<uint8_t> probe(bytes.data_ptr<uint8_t>() + r * row_bytes + b * enc.block_bytes,
                                   bytes.data_ptr<uint8_t>() + r * row_bytes + (b + 1) * enc.block_bytes);
        const std::vector<float> chosen = decode(type, probe, enc.block_elements);
        std::vector<float> best(size_t(enc.block_elements), INFINITY);
        for (int code = range.min_code; code <= range.max_code; ++code) {
          for (int e = 0; e < enc.block_elements; ++e) write_block_code(type, probe.data(), e, code);
          const std::vector<float> v = decode(type, probe, enc.block_elements);
          for (int e = 0; e < enc.block_elements; ++e) {
            const float x = w[r][b * enc.block_elements + e].item<float>();
            best[size_t(e)] = std::min(best[size_t(e)], std::fabs(x - v[size_t(e)]));
          }
        }
        for (int e = 0; e < enc.block_elements; ++e) {
          const float x = w[r][b * enc.block_elements + e].item<float>();
          EXPECT_LE(std::fabs(x - chosen[size_t(e)]), best[size_t(e)] * 1.0001f + 1e-6f)
              << enc.name << " row " << r << " element " << b * enc.block_elements + e;
        }
      }
    // Types whose ggml encoder already stores nearest codes: the bytes are ggml's own.
    if (type == TensorType::Q8_0 || type == TensorType::Q4_K || type == TensorType::Q5_K) {
      const std::vector<float> ones(size_t(cols), 1.0f);
      const at::Tensor wc = w.contiguous();
      const std::vector<uint8_t> ggml = encode_rows_weighted(type, wc.data_ptr<float>(), cols, w.size(0), ones.data());
      EXPECT_TRUE(std::equal(ggml.begin(), ggml.end(), bytes.data_ptr<uint8_t>())) << enc.name;
    }
  }
}

// Lattice types are rounded 8 columns at a time onto each block's fitted scales. With an identity
// Hessian nothing propagates, so every group is the lattice point nearest to the weights under those
// scales: never farther from them than the codes ggml's own encoder chose under the same scales.
TEST(GptqGgml, IdentityHessianOnLatticeTypesIsNoWorseThanGgmlsCodes) {
  const at::Tensor w = awkward_rows(512).contiguous();
  const std::vector<float> flat(512, 1.0f);
  for (TensorType type : {TensorType::IQ1_S, TensorType::IQ1_M, TensorType::IQ2_XXS, TensorType::IQ2_XS,
                          TensorType::IQ2_S, TensorType::IQ3_XXS, TensorType::IQ3_S}) {
    const std::string name = ggml_encoding(type).name;
    const auto q = gptq_ggml_quantize(w, at::eye(512, at::kDouble), type, GptqOptions{});
    const std::vector<uint8_t> ggml = encode_rows_weighted(type, w.data_ptr<float>(), 512, w.size(0), flat.data());
    const at::Tensor ours = q->bytes().contiguous();
    const at::Tensor ggml_values = at::from_blob(decode(type, ggml, 512 * w.size(0)).data(), w.sizes()).clone();
    const at::Tensor mine_values = q->dense();
    double worse = 0;
    for (int64_t r = 0; r < w.size(0); ++r)
      for (int64_t b = 0; b < 2; ++b)
        for (int g = 0; g < 32; ++g) {
          const int64_t e = 256 * b + 8 * g;
          const at::Tensor x = w[r].narrow(0, e, 8);
          const double mine = (x - mine_values[r].narrow(0, e, 8)).square().sum().item<double>();
          const double theirs = (x - ggml_values[r].narrow(0, e, 8)).square().sum().item<double>();
          worse = std::max(worse, mine - theirs * (1 + 1e-6));
        }
    EXPECT_LE(worse, 0.0) << name;
    EXPECT_EQ(size_t(ours.numel()), ggml.size()) << name;
  }
}

TEST(GptqGgml, HandlesBadHessiansAndRejectsBadShapes) {
  const at::Tensor w = awkward_rows(256);
  at::Tensor dead = at::eye(256, at::kDouble);
  dead[9][9] = 0;
  // A dead input's column is zeroed (Q8_0 holds zero exactly; affine types only nearly).
  EXPECT_TRUE((gptq_ggml_quantize(w, dead, TensorType::Q8_0, GptqOptions{})->dense().narrow(1, 9, 1) == 0).all().item<bool>());
  EXPECT_TRUE(at::isfinite(gptq_ggml_quantize(w, dead, TensorType::Q4_K, GptqOptions{})->dense()).all().item<bool>());
  EXPECT_TRUE(at::isfinite(gptq_ggml_quantize(w, at::zeros({256, 256}, at::kDouble), TensorType::Q3_K, GptqOptions{})
                               ->dense())
                  .all()
                  .item<bool>());
  at::Tensor nan = at::eye(256, at::kDouble);
  nan[1][2] = NAN;
  EXPECT_THROW(gptq_ggml_quantize(w, nan, TensorType::Q4_K, GptqOptions{}), Error);
  EXPECT_THROW(gptq_ggml_quantize(awkward_rows(96), at::eye(96, at::kDouble), TensorType::Q4_K, GptqOptions{}), Error);
  // F16 rows (a fallback type) are encoded as they are.
  EXPECT_TRUE(at::allclose(gptq_ggml_quantize(w, at::eye(256, at::kDouble), TensorType::F16, GptqOptions{})->dense(), w,
                           1e-3, 1e-3));
}

double output_error(const at::Tensor& w, const at::Tensor& q, const at::Tensor& hessian) {
  const at::Tensor d = (w - q).to(at::kDouble);
  return at::matmul(at::matmul(d, hessian), d.t()).trace().item<double>();
}

// Quantizes with format-aware GPTQ and records its and imatrix-RTN's output error on the same activations.
class ComparingCompressor : public GgmlCompressor {
 public:
  ComparingCompressor(TensorType type) : GgmlCompressor({}), type_(type) {}
  std::string describe() const override { return "compare"; }
  StatsRequest needs() const override { return {true, true, 0}; }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override {
    const at::Tensor w = linear.weight->dense();
    const auto gptq = gptq_ggml_quantize(w, stats.hessian, type_, GptqOptions{}, name);
    const auto rtn = GgmlWeight::encode(w, type_, stats.sum_squares.to(at::kFloat));
    const double g = output_error(w, gptq->dense(), stats.hessian), r = output_error(w, rtn->dense(), stats.hessian);
    EXPECT_LT(g, r) << name << " " << ggml_encoding(type_).name;
    ratios.push_back(g / r);
    return gptq;
  }
  std::vector<double> ratios;

 private:
  TensorType type_;
};

const char* kGutenberg = "models/gutenberg-dev-llama-5m";
const char* kGutenbergCalib = "data/gutenberg-dev-calib.txt";

at::Tensor gutenberg_calibration(const Checkpoint& checkpoint, int64_t nsamples, int64_t seqlen) {
  CalibrationOptions options;
  options.nsamples = nsamples;
  options.seqlen = seqlen;
  const auto tokenizer = load_tokenizer(checkpoint);
  return calibration_windows(tokenizer->encode(read_calibration_text(test::shared_path(kGutenbergCalib))), options,
                             checkpoint.config.max_position_embeddings);
}

TEST(GptqGgml, BeatsImatrixRtnOnRealActivationsOfEveryLinearLayer) {
  LLMPRESS_REQUIRE_SHARED(kGutenberg);
  LLMPRESS_REQUIRE_SHARED(kGutenbergCalib);
  const Checkpoint checkpoint = open_checkpoint(test::shared_path(kGutenberg));
  const at::Tensor tokens = gutenberg_calibration(checkpoint, 8, 128);
  // Measured means (GPTQ / imatrix-RTN): Q4_K 0.250, Q3_K 0.254, Q4_0 0.194, IQ4_XS 0.219, IQ3_S 0.197,
  // IQ2_XS 0.305; one type of each kind of code layout is kept here for time.
  for (TensorType type : {TensorType::Q4_K, TensorType::Q4_0, TensorType::IQ4_XS, TensorType::IQ2_XS}) {
    ComparingCompressor compare(type);
    EngineOptions engine;
    engine.progress = false;
    compress_sequential(checkpoint, Transformer::load_shell(checkpoint), tokens, compare, engine);
    ASSERT_EQ(int64_t(compare.ratios.size()), 7 * checkpoint.config.num_layers);
    double mean = 0;
    for (double r : compare.ratios) mean += r / double(compare.ratios.size());
    std::printf("%s: GPTQ / imatrix-RTN output error, mean over layers %.3f\n", ggml_encoding(type).name, mean);
  }
}

// The GGUF that `quantize --format gguf` writes, read back, runs exactly the model the library computes.
TEST(GptqGgml, ExportedGgufGivesTheQuantizedModelsLogits) {
  LLMPRESS_REQUIRE_SHARED(kGutenberg);
  LLMPRESS_REQUIRE_SHARED(kGutenbergCalib);
  const std::string model = test::shared_path(kGutenberg);
  test::TempDir dir;
  const std::string out = dir.file("q.gguf");
  const test::CommandResult r = test::run_llmpress("quantize -m " + model + " -o " + out +
                                                   " --format gguf --type Q3_K_M --method gptq --calib " +
                                                   test::shared_path(kGutenbergCalib) +
                                                   " --nsamples 4 --seqlen 64 --no-progress");
  ASSERT_EQ(r.exit_code, 0) << r.err;

  const Checkpoint checkpoint = open_checkpoint(model);
  Transformer expected = Transformer::load_shell(checkpoint);
  GptqOptions gptq;
  std::map<std::string, TensorType> types;
  const Checkpoint written = open_checkpoint(out);
  for (const auto& [name, raw] : written.tensors)
    if (name.find("_proj.weight") != std::string::npos) types[name.substr(0, name.size() - 7)] = raw.type;
  EXPECT_EQ(types.size(), size_t(7 * checkpoint.config.num_layers));
  GgmlGptqCompressor compressor(types, gptq);
  EngineOptions engine;
  engine.progress = false;
  expected.layers.resize(size_t(checkpoint.config.num_layers));
  engine.on_layer = [&](int64_t i, const DecoderLayer& layer, const at::Tensor&) { expected.layers[size_t(i)] = layer; };
  compress_sequential(checkpoint, expected, gutenberg_calibration(checkpoint, 4, 64), compressor, engine);

  const Transformer loaded = Transformer::load(written);
  const at::Tensor probe = at::arange(1, 40, at::kLong).unsqueeze(0);
  // The head and embeddings are quantized by the writer (Q3_K_M gives output.weight Q6_K): compare
  // the decoder stacks on the dense embeddings, and the whole models loosely.
  at::Tensor a = expected.embed(probe), b = expected.embed(probe);
  for (size_t i = 0; i < expected.layers.size(); ++i) {
    a = expected.layers[i].forward(a, checkpoint.config, expected.rope, 0);
    b = loaded.layers[i].forward(b, checkpoint.config, expected.rope, 0);
  }
  EXPECT_TRUE(at::allclose(a, b, 1e-4, 1e-4)) << (a - b).abs().max().item<double>();
  for (size_t i = 0; i < expected.layers.size(); ++i)
    for (const std::string& name : DecoderLayer::linear_names())
      EXPECT_TRUE(at::equal(expected.layers[i].linear(name).weight->dense(), loaded.layers[i].linear(name).weight->dense()))
          << "layer " << i << " " << name;
}

}  // namespace
}  // namespace llmpress

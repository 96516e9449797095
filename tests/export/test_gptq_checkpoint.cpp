// GPTQ checkpoints: the bit packing against a literal reading of the format (formats.md 5.1), and
// `quantize --format gptq` output read back equal to the model the library computes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cli/cli_test_util.h"
#include "llmpress/calib/engine.h"
#include "llmpress/core/error.h"
#include "llmpress/data/calibration.h"
#include "llmpress/data/text.h"
#include "llmpress/export/gptq_checkpoint_writer.h"
#include "llmpress/export/safetensors_writer.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/io/gptq_packing.h"
#include "llmpress/model/transformer.h"
#include "llmpress/quant/gptq.h"
#include "llmpress/tokenizer/tokenizer.h"

namespace llmpress {
namespace {

// Stream bit p of a run of 32 codes is bit p % 32 of word p / 32; code k holds bits [k*b, k*b + b).
std::vector<uint32_t> literal_pack(const std::vector<int>& run, int bits) {
  std::vector<uint32_t> words(size_t(bits), 0);
  for (int k = 0; k < 32; ++k)
    for (int i = 0; i < bits; ++i) {
      const int p = k * bits + i;
      if ((run[size_t(k)] >> i) & 1) words[size_t(p / 32)] |= uint32_t(1) << (p % 32);
    }
  return words;
}

TEST(GptqPacking, MatchesTheFormatsBitStream) {
  at::manual_seed(3);
  for (int bits : {2, 3, 4, 8}) {
    const at::Tensor codes = at::randint(0, 1 << bits, {64, 5}, at::kLong);
    const at::Tensor packed = pack_gptq_rows(codes, bits);
    ASSERT_EQ(packed.sizes(), (std::vector<int64_t>{64 * bits / 32, 5}));
    ASSERT_EQ(packed.scalar_type(), at::kInt);
    for (int64_t col = 0; col < 5; ++col)
      for (int64_t run = 0; run < 2; ++run) {
        std::vector<int> values;
        for (int k = 0; k < 32; ++k) values.push_back(int(codes[run * 32 + k][col].item<int64_t>()));
        const std::vector<uint32_t> expected = literal_pack(values, bits);
        for (int w = 0; w < bits; ++w)
          EXPECT_EQ(uint32_t(packed[run * bits + w][col].item<int32_t>()), expected[size_t(w)]) << bits << " bits";
      }
    EXPECT_TRUE(at::equal(unpack_gptq_rows(packed, bits), codes)) << bits << " bits";
  }
  // Symmetric 4-bit zero points (8) stored minus one: every qzeros word is 0x77777777.
  const at::Tensor sevens = pack_gptq_rows(at::full({32, 1}, 7, at::kLong), 4);
  EXPECT_EQ(uint32_t(sevens[0][0].item<int32_t>()), 0x77777777u);
  EXPECT_THROW(pack_gptq_rows(at::zeros({40, 2}, at::kLong), 4), Error);
  EXPECT_THROW(pack_gptq_rows(at::zeros({32, 2}, at::kLong), 5), Error);
}

const char* kGutenberg = "models/gutenberg-dev-llama-5m";
const char* kGutenbergCalib = "data/gutenberg-dev-calib.txt";

TEST(GptqCheckpoint, ExportReadsBackAsTheQuantizedModel) {
  LLMPRESS_REQUIRE_SHARED(kGutenberg);
  LLMPRESS_REQUIRE_SHARED(kGutenbergCalib);
  const std::string model = test::shared_path(kGutenberg), calib = test::shared_path(kGutenbergCalib);
  test::TempDir dir;
  for (const char* grid : {"--bits 4 --group 64 --act-order", "--bits 3 --group -1 --sym"}) {
    const std::string out = dir.file("gptq");
    const test::CommandResult r = test::run_llmpress("quantize -m " + model + " -o " + out +
                                                     " --format gptq --method gptq " + grid + " --calib " + calib +
                                                     " --nsamples 4 --seqlen 64 --no-progress");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(std::filesystem::exists(out + "/tokenizer.model"));
    const nlohmann::json config = nlohmann::json::parse(read_text_file(out + "/config.json"));
    EXPECT_EQ(config["quantization_config"]["quant_method"], "gptq");

    // The same quantization in process.
    const Checkpoint checkpoint = open_checkpoint(model);
    GptqOptions options;
    options.grid.bits = std::string(grid).find("--bits 4") != std::string::npos ? 4 : 3;
    options.grid.group_size = options.grid.bits == 4 ? 64 : -1;
    options.grid.symmetric = options.grid.bits == 3;
    options.act_order = options.grid.bits == 4;
    EXPECT_EQ(config["quantization_config"]["bits"], options.grid.bits);
    EXPECT_EQ(config["quantization_config"]["desc_act"], options.act_order);
    GptqCompressor compressor(options);
    CalibrationOptions calib_options;
    calib_options.nsamples = 4;
    calib_options.seqlen = 64;
    const at::Tensor tokens = calibration_windows(load_tokenizer(checkpoint)->encode(read_calibration_text(calib)),
                                                  calib_options, checkpoint.config.max_position_embeddings);
    Transformer expected = Transformer::load_shell(checkpoint);
    expected.layers.resize(size_t(checkpoint.config.num_layers));
    EngineOptions engine;
    engine.progress = false;
    engine.on_layer = [&](int64_t i, const DecoderLayer& layer, const at::Tensor&) { expected.layers[size_t(i)] = layer; };
    compress_sequential(checkpoint, expected, tokens, compressor, engine);

    const Checkpoint written = open_checkpoint(out);
    EXPECT_EQ(written.gptq_linears.size(), size_t(7 * checkpoint.config.num_layers));
    const Transformer loaded = Transformer::load(written);
    for (size_t i = 0; i < expected.layers.size(); ++i)
      for (const std::string& name : DecoderLayer::linear_names())
        EXPECT_TRUE(at::equal(expected.layers[i].linear(name).weight->dense(), loaded.layers[i].linear(name).weight->dense()))
            << grid << ": layer " << i << " " << name;
    // Embeddings and norms are stored as float16, so the logits agree to float16 precision.
    const at::Tensor probe = at::arange(1, 33, at::kLong).unsqueeze(0);
    const at::Tensor a = expected.forward(probe), b = loaded.forward(probe);
    EXPECT_LT((a - b).abs().max().item<double>(), 0.05 * a.abs().max().item<double>());
    std::filesystem::remove_all(out);
  }
}

TEST(GptqCheckpoint, RefusesWhatTheFormatCannotHoldAndBadFiles) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  LLMPRESS_REQUIRE_SHARED(kGutenberg);
  test::TempDir dir;
  // stories260K's MLP is 172 wide: not a multiple of 32.
  test::CommandResult r = test::run_llmpress("quantize -m " + test::shared_path("models/stories260K/stories260K.bin") +
                                             " -o " + dir.file("s") + " --format gptq --method rtn --no-progress");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("multiples of 32"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("s")));

  // A GPTQ folder whose qzeros disagree with qweight.
  r = test::run_llmpress("quantize -m " + test::shared_path(kGutenberg) + " -o " + dir.file("g") +
                         " --format gptq --method rtn --bits 4 --group 128 --no-progress");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Checkpoint good = open_checkpoint(dir.file("g"));
  std::vector<NamedTensor> tensors;
  for (const auto& [name, linear] : good.gptq_linears)
    for (const RawTensor* raw : {&linear.qweight, &linear.qzeros, &linear.scales, &linear.g_idx}) {
      const at::ScalarType dtype = raw->type == TensorType::F16 ? at::kHalf : at::kInt;
      at::Tensor t = at::from_blob(const_cast<uint8_t*>(raw->data), raw->shape, dtype).clone();
      if (raw->name == "model.layers.0.self_attn.q_proj.qzeros") t = t.narrow(1, 0, 1).clone();
      tensors.push_back({raw->name, t});
    }
  for (const auto& [name, raw] : good.tensors)
    if (!good.gptq_linears.count(name)) tensors.push_back({name, good.load(name).to(at::kHalf)});
  std::filesystem::create_directories(dir.file("bad"));
  std::filesystem::copy_file(dir.file("g/config.json"), dir.file("bad/config.json"));
  write_safetensors(dir.file("bad/model.safetensors"), tensors);
  try {
    open_checkpoint(dir.file("bad"));
    FAIL() << "a GPTQ layer with mismatched qzeros was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.0.self_attn.q_proj"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace llmpress

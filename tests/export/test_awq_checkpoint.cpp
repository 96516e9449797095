// AWQ (GEMM) checkpoints: the nibble order against a literal reading of the format (formats.md 5.3),
// `quantize --format awq` read back equal to the same quantization written as GPTQ, what the format
// cannot hold refused, and (with LLMPRESS_AUTOAWQ_REF) AutoAWQ's own unpacking code on our files.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "cli/cli_test_util.h"
#include "llmpress/core/error.h"
#include "llmpress/data/text.h"
#include "llmpress/export/safetensors_writer.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/io/gptq_packing.h"
#include "llmpress/io/safetensors.h"
#include "llmpress/model/transformer.h"
#include "torch_reference.h"

namespace llmpress {
namespace {

const char* kGutenberg = "models/gutenberg-dev-llama-5m";

TEST(AwqPacking, NibblesHoldColumnsInTheInterleavedOrder) {
  // Columns 0..7 hold their own index: nibble i holds column {0, 2, 4, 6, 1, 3, 5, 7}[i].
  const at::Tensor ramp = at::arange(8, at::kLong).unsqueeze(0);
  EXPECT_EQ(uint32_t(pack_awq_columns(ramp)[0][0].item<int32_t>()), 0x75316420u);
  at::manual_seed(5);
  const at::Tensor codes = at::randint(0, 16, {6, 40}, at::kLong);
  const at::Tensor packed = pack_awq_columns(codes);
  ASSERT_EQ(packed.sizes(), (std::vector<int64_t>{6, 5}));
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t c = 0; c < 5; ++c) {
      const uint32_t word = uint32_t(packed[r][c].item<int32_t>());
      const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
      for (int i = 0; i < 8; ++i)
        EXPECT_EQ((word >> (4 * i)) & 15u, uint32_t(codes[r][8 * c + order[i]].item<int64_t>()));
    }
  EXPECT_TRUE(at::equal(unpack_awq_columns(packed), codes));
  EXPECT_THROW(pack_awq_columns(at::zeros({2, 12}, at::kLong)), Error);
}

TEST(AwqCheckpoint, ReadsBackAsTheSameModelAsGptqPacking) {
  LLMPRESS_REQUIRE_SHARED(kGutenberg);
  const std::string model = test::shared_path(kGutenberg);
  test::TempDir dir;
  for (const char* grid : {"--bits 4 --group 128", "--bits 4 --group 64 --sym"}) {
    for (const char* format : {"awq", "gptq"}) {
      const test::CommandResult r = test::run_llmpress("quantize -m " + model + " -o " + dir.file(format) +
                                                       " --format " + format + " --method rtn " + grid + " --no-progress");
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    const nlohmann::json q = nlohmann::json::parse(read_text_file(dir.file("awq/config.json")))["quantization_config"];
    EXPECT_EQ(q["quant_method"], "awq");
    EXPECT_EQ(q["bits"], 4);
    EXPECT_EQ(q["group_size"], std::string(grid).find("64") != std::string::npos ? 64 : 128);
    EXPECT_EQ(q["zero_point"], true);
    EXPECT_EQ(q["version"], "gemm");

    const Checkpoint awq = open_checkpoint(dir.file("awq")), gptq = open_checkpoint(dir.file("gptq"));
    ASSERT_EQ(awq.gptq_linears.size(), size_t(7 * awq.config.num_layers));
    const Transformer a = Transformer::load(awq), b = Transformer::load(gptq);
    for (size_t i = 0; i < a.layers.size(); ++i)
      for (const std::string& name : DecoderLayer::linear_names())
        EXPECT_TRUE(at::equal(a.layers[i].linear(name).weight->dense(), b.layers[i].linear(name).weight->dense()))
            << grid << ": layer " << i << " " << name;
    // The stored layout: qweight [in, out / 8] int32, qzeros [groups, out / 8], scales [groups, out], no g_idx.
    std::map<std::string, std::vector<int64_t>> shapes;
    for (const RawTensor& t : read_safetensors(dir.file("awq/model.safetensors")).tensors) shapes[t.name] = t.shape;
    const std::string down = "model.layers.0.mlp.down_proj.";
    EXPECT_EQ(shapes[down + "qweight"], (std::vector<int64_t>{768, 256 / 8}));
    EXPECT_EQ(shapes[down + "scales"][1], 256);
    EXPECT_EQ(shapes[down + "qzeros"][1], 256 / 8);
    EXPECT_FALSE(shapes.count(down + "g_idx"));
    std::filesystem::remove_all(dir.file("awq"));
    std::filesystem::remove_all(dir.file("gptq"));
  }
}

TEST(AwqCheckpoint, RefusesWhatTheFormatCannotHoldAndBadFiles) {
  LLMPRESS_REQUIRE_SHARED(kGutenberg);
  const std::string model = test::shared_path(kGutenberg);
  test::TempDir dir;
  test::CommandResult r = test::run_llmpress("quantize -m " + model + " -o " + dir.file("a3") +
                                             " --format awq --method rtn --bits 3 --no-progress");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("4-bit"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("a3")));

  r = test::run_llmpress("quantize -m " + model + " -o " + dir.file("a") + " --format awq --method rtn --bits 4 "
                         "--no-progress");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Another kernel layout, and a qzeros that disagrees with qweight.
  nlohmann::json config = nlohmann::json::parse(read_text_file(dir.file("a/config.json")));
  config["quantization_config"]["version"] = "gemv";
  std::ofstream(dir.file("a/config.json")) << config.dump();
  EXPECT_THROW(open_checkpoint(dir.file("a")), Error);
  config["quantization_config"]["version"] = "gemm";
  std::ofstream(dir.file("a/config.json")) << config.dump();
  EXPECT_NO_THROW(open_checkpoint(dir.file("a")));
  std::vector<NamedTensor> tensors;
  const SafetensorsFile stored = read_safetensors(dir.file("a/model.safetensors"));
  for (const RawTensor& raw : stored.tensors) {
    const at::ScalarType dtype = raw.type == TensorType::F16 ? at::kHalf : raw.type == TensorType::I32 ? at::kInt : at::kFloat;
    at::Tensor t = at::from_blob(const_cast<uint8_t*>(raw.data), raw.shape, dtype).clone();
    if (raw.name == "model.layers.1.self_attn.v_proj.qzeros") t = t.narrow(1, 0, 1).clone();
    tensors.push_back({raw.name, t});
  }
  std::filesystem::create_directories(dir.file("bad"));
  std::filesystem::copy_file(dir.file("a/config.json"), dir.file("bad/config.json"));
  write_safetensors(dir.file("bad/model.safetensors"), tensors);
  try {
    open_checkpoint(dir.file("bad"));
    FAIL() << "an AWQ layer with mismatched qzeros was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.1.self_attn.v_proj"), std::string::npos) << e.what();
  }
}

TEST(AwqCheckpoint, AutoAwqsUnpackingReadsOurFiles) {
  const char* repo = std::getenv("LLMPRESS_AUTOAWQ_REF");
  if (!repo || !*repo) GTEST_SKIP() << "set LLMPRESS_AUTOAWQ_REF to a checkout of casper-hansen/AutoAWQ";
  const std::string why = test::torch_reference_unavailable();
  if (!why.empty()) GTEST_SKIP() << why;
  LLMPRESS_REQUIRE_SHARED(kGutenberg);
  const std::string model = test::shared_path(kGutenberg);
  test::TempDir dir;
  for (const char* format : {"awq", "dense"}) {
    const test::CommandResult r = test::run_llmpress("quantize -m " + model + " -o " + dir.file(format) + " --format " +
                                                     format + " --method rtn --bits 4 --group 128 --no-progress");
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  const std::string script = (std::filesystem::path(__FILE__).parent_path() / "awq_reference_unpack.py").string();
  const std::string command = test::torch_python() + " " + script + " " + repo + " " + dir.file("awq") + " " +
                              dir.file("dense") + " > " + dir.file("log") + " 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << read_text_file(dir.file("log"));
  // Dequantized from float16 scales in float32 on both sides: the same numbers.
  EXPECT_EQ(read_text_file(dir.file("log")), "layers 42 max_abs_diff 0.0\n");
}

}  // namespace
}  // namespace llmpress

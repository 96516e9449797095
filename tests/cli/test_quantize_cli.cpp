// llmpress quantize end to end on stories260K: the output loads and keeps a sane perplexity.
#include <gtest/gtest.h>

#include "cli/cli_test_util.h"

namespace llmpress {
namespace {

using RunResult = test::CommandResult;

RunResult llmpress(const std::string& args) { return test::run_llmpress(args); }

double perplexity_of(const std::string& model, const std::string& text) {
  const RunResult r = llmpress("perplexity -m " + model + " -f " + text + " -c 128 --chunks 8 --json --no-progress");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const size_t at = r.out.find("\"perplexity\":");
  if (at == std::string::npos) return -1;
  return std::stod(r.out.substr(at + 13));
}

TEST(CliQuantize, GptqFakeQuantizedCheckpointLoadsWithSanePerplexity) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  LLMPRESS_REQUIRE_SHARED("data/tinystories-calib.txt");
  const std::string model = test::shared_path("models/stories260K/stories260K.bin");
  const std::string eval = test::shared_path("data/tinystories-eval.txt");
  test::TempDir dir;
  const RunResult q = llmpress("quantize -m " + model + " -o " + dir.file("q4") + " --method gptq --bits 4 --group 32 " +
                         "--calib " + test::shared_path("data/tinystories-calib.txt") +
                         " --nsamples 8 --seqlen 64 --verbose --no-progress");
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_NE(q.out.find("bits/weight"), std::string::npos) << q.out;
  EXPECT_NE(q.out.find("model.layers.0.self_attn.q_proj"), std::string::npos) << q.out;
  EXPECT_TRUE(std::filesystem::exists(dir.file("q4/tokenizer.model")));

  const double dense = perplexity_of(model, eval), quantized = perplexity_of(dir.file("q4"), eval);
  EXPECT_GT(dense, 1.0);
  EXPECT_TRUE(std::isfinite(quantized));
  EXPECT_GE(quantized, dense * 0.98);
  EXPECT_LT(quantized, dense * 1.5) << "dense " << dense << ", 4-bit gptq " << quantized;
}

TEST(CliQuantize, ClearErrors) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const std::string model = test::shared_path("models/stories260K/stories260K.bin");
  test::TempDir dir;
  RunResult r = llmpress("quantize -m " + model + " -o " + dir.file("x") + " --method rtn --format gguf --type Q9_K");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("Q9_K"), std::string::npos) << r.err;
  r = llmpress("quantize -m " + model + " -o " + dir.file("x") + " --method gptq");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--calib"), std::string::npos) << r.err;
  r = llmpress("quantize -m " + model + " -o " + dir.file("x") + " --method awq");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--calib"), std::string::npos) << r.err;
  r = llmpress("quantize -m " + model + " -o " + dir.file("x") + " --method rtn --bits 9");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_FALSE(std::filesystem::exists(dir.file("x")));
}

// The mixes llama-quantize refuses without an imatrix are refused without calibration, before any work,
// by quantize (rtn), convert and a pipeline whose output mix would be rounded without importance.
TEST(CliQuantize, LowBitIquantMixesNeedCalibration) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const std::string model = test::shared_path("models/stories260K/stories260K.bin");
  test::TempDir dir;
  for (const char* mix : {"IQ2_XS", "IQ1_M", "IQ3_XXS"}) {
    RunResult r = llmpress("quantize -m " + model + " -o " + dir.file("x.gguf") + " --method rtn --type " + mix);
    EXPECT_EQ(r.exit_code, 1) << mix;
    EXPECT_NE(r.err.find(std::string(mix) + " needs importance weights"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("--calib"), std::string::npos) << r.err;
    r = llmpress("convert -m " + model + " -o " + dir.file("x.gguf") + " --type " + mix);
    EXPECT_EQ(r.exit_code, 1) << mix;
    EXPECT_NE(r.err.find("--calib"), std::string::npos) << r.err;
  }
  RunResult r = llmpress("quantize -m " + model + " -o " + dir.file("x.gguf") + " --method awq --type IQ2_XXS --calib " +
                         test::shared_path("data/tinystories-calib.txt"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("use gptq"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf")));
  // Without calibration the types that do not need it are written (IQ4_XS falls back to IQ4_NL on these rows).
  r = llmpress("convert -m " + model + " -o " + dir.file("x.gguf") + " --type IQ4_XS");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

}  // namespace
}  // namespace llmpress

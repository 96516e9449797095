// The i-quant and ternary mixes we write (llmpress quantize with calibration: ggml's encoders weighted
// by the activations, as llama-quantize --imatrix): llama.cpp must load every file, and its perplexity
// must equal ours within 1% (it multiplies against activations rounded to 8 bits, we do not). Uses
// llama-perplexity from LLMPRESS_LLAMACPP_BIN, else node-llama-cpp's llama.cpp (tests/llamacpp_node.h).
#include <cstdio>
#include <map>

#include "cli/cli_test_util.h"
#include "export_test_util.h"
#include "llamacpp_node.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/io/gguf.h"
#include "test_util.h"

namespace llmpress {
namespace {

constexpr int kContext = 256, kChunks = 4;

double our_perplexity(const std::string& path, const std::string& text) {
  return test::llamacpp_style_perplexity(path, text, kContext, kChunks);
}

TEST(LlamaCppIquantMixes, LlamaCppRunsEveryMixWithOurPerplexity) {
  LLMPRESS_REQUIRE_LLAMACPP();
  LLMPRESS_REQUIRE_SHARED("models/gutenberg-dev-llama-5m/model.safetensors");
  LLMPRESS_REQUIRE_SHARED("data/gutenberg-dev-calib.txt");
  LLMPRESS_REQUIRE_SHARED("data/gutenberg-dev-eval.txt");
  const std::string model = test::shared_path("models/gutenberg-dev-llama-5m");
  const std::string eval = test::shared_path("data/gutenberg-dev-eval.txt");
  const std::string calib = " --calib " + test::shared_path("data/gutenberg-dev-calib.txt") + " --nsamples 8 --seqlen 128";
  test::TempDir dir;
  // Each mix and a type that must be in its file (IQ2_S's mix is mostly IQ2_XS, IQ2_M's mostly IQ2_S,
  // IQ3_XS's and IQ3_M's IQ3_S).
  const std::pair<const char*, const char*> mixes[] = {
      {"IQ1_S", "IQ1_S"},     {"IQ1_M", "IQ1_M"},   {"IQ2_XXS", "IQ2_XXS"}, {"IQ2_XS", "IQ2_XS"},
      {"IQ2_S", "IQ2_XS"},    {"IQ2_M", "IQ2_S"},   {"IQ3_XXS", "IQ3_XXS"}, {"IQ3_XS", "IQ3_S"},
      {"IQ3_S", "IQ3_S"},     {"IQ3_M", "IQ3_S"},   {"IQ4_NL", "IQ4_NL"},   {"IQ4_XS", "IQ4_XS"},
      {"TQ1_0", "TQ1_0"},     {"TQ2_0", "TQ2_0"}};
  for (const auto& [mix, type] : mixes) {
    SCOPED_TRACE(mix);
    const std::string path = dir.path() + "/gutenberg-" + mix + ".gguf";
    const test::CommandResult r = test::run_llmpress("quantize -m " + model + " -o " + path + " --type " + mix +
                                                     " --method rtn --no-progress" + calib);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::map<std::string, int> counts;
    for (const GgufTensorInfo& t : read_gguf(path).tensors) ++counts[ggml_type_name(t.ggml_type)];
    EXPECT_GT(counts[type], 0) << "no " << type << " tensor";
    const double ours = our_perplexity(path, eval);
    const auto theirs = test::llamacpp_perplexity(path, eval, kContext, kChunks);
    ASSERT_TRUE(theirs);
    std::printf("  %-8s llmpress %.4f  llama.cpp %.4f\n", mix, ours, *theirs);
    EXPECT_NEAR(ours, *theirs, 0.01 * *theirs);
  }
}

}  // namespace
}  // namespace llmpress

// Layer-by-layer perplexity (models larger than memory) gives the whole-model number to the last bit.
#include <gtest/gtest.h>

#include "cli/cli_test_util.h"
#include "llmpress/data/text.h"
#include "llmpress/eval/perplexity.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/model/layer_source.h"
#include "llmpress/model/transformer.h"
#include "llmpress/tokenizer/tokenizer.h"
#include "test_util.h"

namespace llmpress {
namespace {

TEST(PerplexityStreamed, EqualsTheLoadedModelsNumberExactly) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K-F32.gguf");
  LLMPRESS_REQUIRE_SHARED("data/tinystories-eval.txt");
  test::TempDir dir;
  // A quantized GGUF (layers kept as ggml blocks) as well as the float file.
  const std::string q4 = dir.file("q4.gguf");
  const auto made = test::run_llmpress("quantize -m " + test::shared_path("models/stories260K/stories260K-F32.gguf") +
                                       " -o " + q4 + " --type Q4_0 --no-progress");
  ASSERT_EQ(made.exit_code, 0) << made.err;
  for (const std::string& path : {test::shared_path("models/stories260K/stories260K-F32.gguf"), q4}) {
    const Checkpoint checkpoint = open_checkpoint(path);
    const std::vector<int32_t> tokens =
        load_tokenizer(checkpoint)->encode(read_text_file(test::shared_path("data/tinystories-eval.txt")));
    const Transformer model = Transformer::load(checkpoint);
    for (bool llamacpp : {false, true}) {
      PerplexityOptions options;
      options.context = 128;
      options.max_chunks = 7;  // with batches of 3 windows: a short last batch too
      options.batch_tokens = 3 * 128;
      options.llamacpp = llamacpp;
      options.progress = false;
      const PerplexityResult whole = perplexity(model, tokens, options);
      const PerplexityResult streamed = perplexity_streamed(CheckpointSource(checkpoint), tokens, options);
      EXPECT_EQ(streamed.mean_nll, whole.mean_nll) << path << " " << llamacpp;
      EXPECT_EQ(streamed.uncertainty, whole.uncertainty) << path;
      EXPECT_EQ(streamed.scored_tokens, whole.scored_tokens) << path;
      EXPECT_EQ(streamed.chunks, 7);
    }
  }
  // The command line: --stream prints the same result line, and refuses what needs the whole model.
  const std::string base = "perplexity -m " + q4 + " -f " + test::shared_path("data/tinystories-eval.txt") +
                           " -c 128 --chunks 4 --no-progress";
  const auto loaded = test::run_llmpress(base);
  const auto streamed = test::run_llmpress(base + " --stream");
  ASSERT_EQ(loaded.exit_code, 0) << loaded.err;
  ASSERT_EQ(streamed.exit_code, 0) << streamed.err;
  EXPECT_EQ(streamed.out.substr(streamed.out.find("ppl =")), loaded.out.substr(loaded.out.find("ppl =")));
  const auto refused = test::run_llmpress(base + " --stream --act-bits 8");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("--stream runs the model as stored"), std::string::npos) << refused.err;
}

}  // namespace
}  // namespace llmpress

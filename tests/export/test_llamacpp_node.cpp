// llama.cpp itself (node-llama-cpp's prebuilt CPU build, tools/llamacpp-node, installed by scripts/setup.sh)
// on llama.cpp's own stories260K GGUF: the runner must reproduce llama-perplexity's published numbers and
// llama2.c's greedy sample, so that the other tests can trust what it says about the GGUF files we write.
// Skips with the reason when node or the module is absent.
#include <cstdio>

#include "llamacpp_node.h"
#include "llmpress/data/text.h"
#include "llmpress/eval/generate.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/model/transformer.h"
#include "llmpress/tokenizer/tokenizer.h"
#include "test_util.h"

namespace llmpress {
namespace {

const char* kStoriesGguf = "models/stories260K/stories260K-F32.gguf";
const char* kEval = "data/tinystories-eval.txt";

// llama-perplexity (llama.cpp sources of February 2025, CPU build) on stories260K-F32.gguf,
// tinystories-eval.txt, -c 256 prints "Final estimate: PPL = 4.4121 +/- 0.02546" over the whole file
// (1011 chunks; ../shared/models/stories260K/README.md) and "PPL = 3.5828 +/- 0.05266" with --chunks 100.
// 100 chunks keep the test short (about 10-25 s, most of it node-llama-cpp's start-up and tokenizing).
TEST(LlamaCppNode, Stories260KPerplexityMatchesLlamaPerplexity) {
  LLMPRESS_REQUIRE_LLAMACPP_NODE();
  LLMPRESS_REQUIRE_SHARED(kStoriesGguf);
  LLMPRESS_REQUIRE_SHARED(kEval);
  const auto r = test::llamacpp_node_perplexity(test::shared_path(kStoriesGguf), test::shared_path(kEval), 256, 100);
  ASSERT_TRUE(r);
  std::printf("  node-llama-cpp: PPL %.4f +/- %.5f over %d chunks (%ld tokens scored of %ld)\n", r->ppl, r->stderr_,
              r->chunks, r->scored, r->tokens);
  EXPECT_EQ(r->chunks, 100);
  EXPECT_EQ(r->scored, 100 * 127);
  EXPECT_EQ(r->tokens, 258907);
  EXPECT_NEAR(r->ppl, 3.5828, 0.00005);
  EXPECT_NEAR(r->stderr_, 0.05266, 0.000005);
}

// The whole file: llama.cpp's published 4.4121 +/- 0.02546. Slower (1011 chunks: about 1-3 minutes with
// one thread), so only with LLMPRESS_SLOW_TESTS=1.
TEST(LlamaCppNode, Stories260KWholeFilePerplexityIsPublishedNumber) {
  if (std::getenv("LLMPRESS_SLOW_TESTS") == nullptr) GTEST_SKIP() << "set LLMPRESS_SLOW_TESTS=1 (whole eval file)";
  LLMPRESS_REQUIRE_LLAMACPP_NODE();
  LLMPRESS_REQUIRE_SHARED(kStoriesGguf);
  LLMPRESS_REQUIRE_SHARED(kEval);
  const auto r = test::llamacpp_node_perplexity(test::shared_path(kStoriesGguf), test::shared_path(kEval), 256);
  ASSERT_TRUE(r);
  std::printf("  node-llama-cpp: PPL %.4f +/- %.5f over %d chunks\n", r->ppl, r->stderr_, r->chunks);
  EXPECT_EQ(r->chunks, 1011);
  EXPECT_NEAR(r->ppl, 4.4121, 0.00005);
  EXPECT_NEAR(r->stderr_, 0.02546, 0.000005);
}

// llama2.c's regression sample (expected-greedy-200.txt: `run -t 0 -n 200` from BOS, the leading space of
// the first piece stripped) is what llama.cpp generates greedily from BOS, and llmpress's own greedy
// decoding of the same GGUF gives the same 200 ids.
TEST(LlamaCppNode, Stories260KGreedyMatchesLlama2cAndLlmpress) {
  LLMPRESS_REQUIRE_LLAMACPP_NODE();
  LLMPRESS_REQUIRE_SHARED(kStoriesGguf);
  const std::string gguf = test::shared_path(kStoriesGguf);
  const auto g = test::llamacpp_greedy(gguf, "", 200);
  ASSERT_TRUE(g);
  ASSERT_EQ(g->tokens.size(), 200u);
  EXPECT_EQ(g->prompt_tokens, std::vector<int>{1});
  std::string expected = read_text_file(test::shared_path("models/stories260K/expected-greedy-200.txt"));
  while (!expected.empty() && expected.back() == '\n') expected.pop_back();
  std::string text = g->text;
  if (!text.empty() && text[0] == ' ') text.erase(0, 1);
  EXPECT_EQ(text, expected);

  const Checkpoint checkpoint = open_checkpoint(gguf);
  const auto tokenizer = load_tokenizer(checkpoint);
  const Transformer model = Transformer::load(checkpoint);
  GenerateOptions options;
  options.temperature = 0;
  options.max_new_tokens = 200;
  const std::vector<int32_t> ours = generate(model, {tokenizer->bos_id()}, options);
  EXPECT_EQ(std::vector<int>(ours.begin(), ours.end()), g->tokens);
}

// A prompt is tokenized as llama.cpp tokenizes it (BOS first), and the runner reports clear errors.
TEST(LlamaCppNode, PromptTokensAndErrors) {
  LLMPRESS_REQUIRE_LLAMACPP_NODE();
  LLMPRESS_REQUIRE_SHARED(kStoriesGguf);
  const std::string gguf = test::shared_path(kStoriesGguf);
  const auto g = test::llamacpp_greedy(gguf, "Once upon a time", 4);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->prompt_tokens, (std::vector<int>{1, 403, 407, 261, 378}));
  EXPECT_EQ(g->tokens.size(), 4u);

  test::TempDir dir;
  const auto missing = test::llamacpp_detail::run(test::llamacpp_node_script("perplexity.mjs") + " -m " +
                                                  dir.file("none.gguf") + " -f " + dir.file("none.txt"));
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.output.find("error: no such model file"), std::string::npos) << missing.output;
}

}  // namespace
}  // namespace llmpress

// End-to-end checks against numbers and text published by others for the shared models:
// llama2.c's own greedy sample, llama.cpp's perplexity, and the gutenberg model's PyTorch perplexity.
#include <gtest/gtest.h>

#include "llmpress/data/text.h"
#include "llmpress/eval/generate.h"
#include "llmpress/eval/perplexity.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/model/transformer.h"
#include "llmpress/tokenizer/tokenizer.h"
#include "test_util.h"

namespace llmpress {
namespace {

const char* kStoriesBin = "models/stories260K/stories260K.bin";
const char* kStoriesGguf = "models/stories260K/stories260K-F32.gguf";

// llama2.c's regression test (test_all.py, expected_stdout): `run stories260K.bin -z tok512.bin -t 0 -n 200`
// prints exactly this text; run.c starts from BOS and decodes each token after the first with the
// leading space of a post-BOS piece stripped.
TEST(ReferenceModels, Stories260KGreedyGenerationMatchesLlama2cSample) {
  LLMPRESS_REQUIRE_SHARED(kStoriesBin);
  const Checkpoint checkpoint = open_checkpoint(test::shared_path(kStoriesBin));
  const auto tokenizer = load_tokenizer(checkpoint);
  const Transformer model = Transformer::load(checkpoint);
  std::string expected = read_text_file(test::shared_path("models/stories260K/expected-greedy-200.txt"));

  GenerateOptions options;
  options.temperature = 0;
  options.max_new_tokens = 200;
  options.stop_ids = {tokenizer->bos_id()};
  std::string text;
  int32_t previous = tokenizer->bos_id();
  generate(model, {tokenizer->bos_id()}, options, [&](int32_t id) {
    text += tokenizer->token_text(id, previous);
    previous = id;
  });
  while (!expected.empty() && expected.back() == '\n') expected.pop_back();  // run.c's final newline
  EXPECT_EQ(text, expected);
}

// The GGUF was written by llama.cpp's converter from the .bin; the two loaders (one of them
// undoing llama.cpp's interleaved-RoPE layout) must give the same logits.
TEST(ReferenceModels, Stories260KGgufAndLlama2cGiveSameLogits) {
  LLMPRESS_REQUIRE_SHARED(kStoriesBin);
  LLMPRESS_REQUIRE_SHARED(kStoriesGguf);
  const Transformer from_bin = Transformer::load(open_checkpoint(test::shared_path(kStoriesBin)));
  const Transformer from_gguf = Transformer::load(open_checkpoint(test::shared_path(kStoriesGguf)));
  at::manual_seed(0);
  const at::Tensor tokens = at::randint(0, 512, {2, 64}, at::kLong);
  const at::Tensor a = from_bin.forward(tokens), b = from_gguf.forward(tokens);
  const double rel = ((a - b).abs().max() / a.abs().max()).item<double>();
  EXPECT_LT(rel, 1e-5);
}

// ../shared/models/stories260K/README.md: llama.cpp's llama-perplexity on stories260K-F32.gguf,
// tinystories-eval.txt, -c 256 gives 4.4121 +/- 0.0255.
TEST(ReferenceModels, Stories260KPerplexityMatchesLlamaCpp) {
  LLMPRESS_REQUIRE_SHARED(kStoriesGguf);
  const Checkpoint checkpoint = open_checkpoint(test::shared_path(kStoriesGguf));
  const auto tokenizer = load_tokenizer(checkpoint);
  const Transformer model = Transformer::load(checkpoint);
  const auto tokens = tokenizer->encode(read_text_file(test::shared_path("data/tinystories-eval.txt")));
  PerplexityOptions options;
  options.context = 256;
  options.llamacpp = true;
  options.bos_id = tokenizer->bos_id();
  options.progress = false;
  const PerplexityResult result = perplexity(model, tokens, options);
  EXPECT_NEAR(result.perplexity, 4.4121, 0.0006);
  EXPECT_NEAR(result.uncertainty, 0.0255, 0.0001);
}

// ../shared/models/gutenberg-dev-llama-5m/README.md: PyTorch float32 perplexity 16.005 over the 657
// non-overlapping 256-token windows of gutenberg-dev-eval.txt (libsentencepiece tokens, no BOS).
TEST(ReferenceModels, GutenbergPerplexityMatchesPyTorch) {
  LLMPRESS_REQUIRE_SHARED("models/gutenberg-dev-llama-5m/model.safetensors");
  const Checkpoint checkpoint = open_checkpoint(test::shared_path("models/gutenberg-dev-llama-5m"));
  const auto tokenizer = load_tokenizer(checkpoint);
  const Transformer model = Transformer::load(checkpoint);
  const auto tokens = tokenizer->encode(read_text_file(test::shared_path("data/gutenberg-dev-eval.txt")));
  PerplexityOptions options;
  options.context = 256;
  options.progress = false;
  const PerplexityResult result = perplexity(model, tokens, options);
  EXPECT_EQ(result.chunks, 657);
  EXPECT_NEAR(result.perplexity, 16.005, 0.002);
}

}  // namespace
}  // namespace llmpress

// Runs llama.cpp on GGUF files we write: llama-perplexity from LLMPRESS_LLAMACPP_BIN (a llama.cpp build;
// never part of this repository) when that is set, otherwise node-llama-cpp's prebuilt llama.cpp that
// scripts/setup.sh installs (tests/llamacpp_node.h). Skips when neither is there.
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "export_test_util.h"
#include "llamacpp_node.h"
#include "cli/cli_test_util.h"
#include "llmpress/export/gguf_writer.h"
#include "llmpress/model/transformer.h"
#include "llmpress/tokenizer/tokenizer.h"
#include "test_util.h"

namespace llmpress {
namespace {

// Final perplexity llama.cpp prints, or -1 when it failed to load/run (the failure is already reported).
double llamacpp_perplexity(const std::string& model, const std::string& text, int chunks, int context = 256) {
  return test::llamacpp_perplexity(model, text, context, chunks).value_or(-1);
}

// Where the GGUF files go: LLMPRESS_EXPORT_KEEP_DIR (to rerun llama.cpp by hand) or a temp folder.
std::string output_dir(const test::TempDir& temp) {
  const char* keep = std::getenv("LLMPRESS_EXPORT_KEEP_DIR");
  return keep && *keep ? std::string(keep) : temp.path();
}

TEST(LlamaCppLoad, GutenbergGgufFilesGiveSanePerplexity) {
  LLMPRESS_REQUIRE_LLAMACPP();
  LLMPRESS_REQUIRE_SHARED("models/gutenberg-dev-llama-5m/model.safetensors");
  LLMPRESS_REQUIRE_SHARED("data/gutenberg-dev-eval.txt");
  const Checkpoint checkpoint = open_checkpoint(test::shared_path("models/gutenberg-dev-llama-5m"));
  const Vocab vocab = load_tokenizer(checkpoint)->to_vocab();
  const std::vector<NamedTensor> tensors = test::load_all(checkpoint);
  test::TempDir dir;
  double dense = 0;
  for (TensorType type : {TensorType::F32, TensorType::F16, TensorType::Q8_0, TensorType::Q4_0}) {
    const std::string path = output_dir(dir) + "/gutenberg-" + tensor_type_name(type) + ".gguf";
    write_gguf_model(path, checkpoint.config, tensors, vocab, type);
    const double ppl = llamacpp_perplexity(path, test::shared_path("data/gutenberg-dev-eval.txt"), 8);
    std::printf("  %s: llama.cpp PPL %.4f\n", tensor_type_name(type).c_str(), ppl);
    if (type == TensorType::F32) dense = ppl;
    EXPECT_GT(ppl, 5.0);
    EXPECT_LT(ppl, 30.0);
    if (dense > 0) EXPECT_LT(ppl, dense * (type == TensorType::Q4_0 ? 1.3 : 1.02)) << tensor_type_name(type);
  }
}

// Every k-quant / legacy type we write, through llama-quantize style mixes: llama.cpp must load
// each file and give a perplexity in line with the mix's bit rate.
TEST(LlamaCppLoad, GutenbergMixesGiveSanePerplexity) {
  LLMPRESS_REQUIRE_LLAMACPP();
  LLMPRESS_REQUIRE_SHARED("models/gutenberg-dev-llama-5m/model.safetensors");
  LLMPRESS_REQUIRE_SHARED("data/gutenberg-dev-eval.txt");
  const Checkpoint checkpoint = open_checkpoint(test::shared_path("models/gutenberg-dev-llama-5m"));
  const Vocab vocab = load_tokenizer(checkpoint)->to_vocab();
  const std::vector<NamedTensor> tensors = test::load_all(checkpoint);
  test::TempDir dir;
  const std::string eval = test::shared_path("data/gutenberg-dev-eval.txt");
  const std::string dense_path = output_dir(dir) + "/gutenberg-mix-F32.gguf";
  write_gguf_model_mix(dense_path, checkpoint.config, tensors, vocab, "F32");
  const double dense = llamacpp_perplexity(dense_path, eval, 8);
  std::printf("  F32: llama.cpp PPL %.4f\n", dense);
  for (const char* mix : {"Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "Q4_1",
                          "Q5_0", "Q5_1"}) {
    const std::string path = output_dir(dir) + "/gutenberg-mix-" + mix + ".gguf";
    write_gguf_model_mix(path, checkpoint.config, tensors, vocab, mix);
    const double ppl = llamacpp_perplexity(path, eval, 8);
    std::printf("  %s: llama.cpp PPL %.4f\n", mix, ppl);
    EXPECT_GT(ppl, dense * 0.98) << mix;
    EXPECT_LT(ppl, dense * (std::string(mix) == "Q2_K" ? 3.0 : 1.5)) << mix;
  }
}

// stories260K (64-wide rows, 172-wide ffn_down) read from llama.cpp's own GGUF and written back:
// Q8_0 keeps ffn_down in F16 because 172 is not a multiple of the 32-element block.
TEST(LlamaCppLoad, Stories260KGgufFilesRun) {
  LLMPRESS_REQUIRE_LLAMACPP();
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K-F32.gguf");
  LLMPRESS_REQUIRE_SHARED("data/tinystories-eval.txt");
  const Checkpoint checkpoint = open_checkpoint(test::shared_path("models/stories260K/stories260K-F32.gguf"));
  const std::vector<NamedTensor> tensors = test::load_all(checkpoint);
  test::TempDir dir;
  const double reference =
      llamacpp_perplexity(test::shared_path("models/stories260K/stories260K-F32.gguf"),
                          test::shared_path("data/tinystories-eval.txt"), 8, 128);
  std::printf("  llama.cpp's own F32 file: PPL %.4f\n", reference);
  for (TensorType type : {TensorType::F32, TensorType::F16, TensorType::Q8_0}) {
    const std::string path = output_dir(dir) + "/stories260K-" + tensor_type_name(type) + ".gguf";
    write_gguf_model(path, checkpoint.config, tensors, *checkpoint.vocab, type);
    const double ppl = llamacpp_perplexity(path, test::shared_path("data/tinystories-eval.txt"), 8, 128);
    std::printf("  %s: llama.cpp PPL %.4f\n", tensor_type_name(type).c_str(), ppl);
    if (type == TensorType::F32) EXPECT_NEAR(ppl, reference, reference * 1e-4);
    EXPECT_LT(ppl, reference * 1.05);
    // The file we wrote generates, under llama.cpp, what llama.cpp's own file generates (node runner only).
    if (type == TensorType::F32 && test::llamacpp_node_unavailable().empty()) {
      const auto theirs = test::llamacpp_greedy(test::shared_path("models/stories260K/stories260K-F32.gguf"), "", 64);
      const auto ours = test::llamacpp_greedy(path, "", 64);
      ASSERT_TRUE(theirs && ours);
      EXPECT_EQ(ours->tokens, theirs->tokens);
    }
  }
  // Rows of 64/172: every k-type falls back to a 32-block type or F16, as llama-quantize does.
  const std::string path = output_dir(dir) + "/stories260K-mix-Q4_K_M.gguf";
  write_gguf_model_mix(path, checkpoint.config, tensors, *checkpoint.vocab, "Q4_K_M");
  const double ppl = llamacpp_perplexity(path, test::shared_path("data/tinystories-eval.txt"), 8, 128);
  std::printf("  Q4_K_M mix: llama.cpp PPL %.4f\n", ppl);
  EXPECT_LT(ppl, reference * 1.3);
}

// How far llama.cpp's greedy choice may sit below our best logit. llama.cpp rounds activations to 8 bits
// (Q8_0 / Q8_K) in its quantized dot products, so where two tokens are nearly tied it may pick the other
// one; anything beyond this margin would be a real difference between its model and ours.
constexpr double kTieMargin = 0.05;

// llama.cpp's greedy continuation of `prompt` on `gguf` is ours: at every step (fed llama.cpp's tokens,
// so one near-tie does not end the comparison) its token is our argmax, or within kTieMargin of it.
// Prints how many of the n steps agreed exactly and the largest gap.
void expect_same_greedy(const std::string& label, const std::string& gguf, const std::string& prompt, int n) {
  const auto theirs = test::llamacpp_greedy(gguf, prompt, n);
  if (!theirs) return;
  EXPECT_EQ(int(theirs->tokens.size()), n) << gguf;
  const Transformer model = Transformer::load(open_checkpoint(gguf));
  std::vector<int64_t> context(theirs->prompt_tokens.begin(), theirs->prompt_tokens.end());
  int agreed = 0;
  double largest_gap = 0;
  for (size_t i = 0; i < theirs->tokens.size(); ++i) {
    const at::Tensor logits = model.forward(at::tensor(context, at::kLong).unsqueeze(0))[0][-1].to(at::kDouble);
    const int64_t ours = logits.argmax().item<int64_t>();
    const int64_t token = theirs->tokens[i];
    const double gap = logits[ours].item<double>() - logits[token].item<double>();
    if (ours == token) ++agreed;
    largest_gap = std::max(largest_gap, gap);
    EXPECT_LE(gap, kTieMargin) << gguf << ": step " << i << ": llama.cpp chose " << token << ", we " << ours;
    context.push_back(token);
  }
  std::printf("  %s: %d of %d greedy tokens identical (largest gap to our best logit %.3f)\n", label.c_str(), agreed, n,
              largest_gap);
}

// Every type and mix we write, and a model whose heads and MLP channels were pruned away (other shapes
// than the config llama.cpp would expect of a standard model), generate under llama.cpp what they
// generate under llmpress.
TEST(LlamaCppLoad, GreedyContinuationsAreOursOnEveryTypeAndShape) {
  LLMPRESS_REQUIRE_LLAMACPP_NODE();
  LLMPRESS_REQUIRE_SHARED("models/gutenberg-dev-llama-5m/model.safetensors");
  LLMPRESS_REQUIRE_SHARED("data/gutenberg-dev-calib.txt");
  const std::string calib = " --calib " + test::shared_path("data/gutenberg-dev-calib.txt") + " --nsamples 8 --seqlen 128";
  const std::string model_dir = test::shared_path("models/gutenberg-dev-llama-5m");
  const Checkpoint checkpoint = open_checkpoint(model_dir);
  const Vocab vocab = load_tokenizer(checkpoint)->to_vocab();
  const std::vector<NamedTensor> tensors = test::load_all(checkpoint);
  test::TempDir dir;
  const std::string prompt = "It was a dark and stormy night; the rain fell in torrents";
  for (const char* mix : {"F16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K"}) {
    const std::string path = output_dir(dir) + "/greedy-" + mix + ".gguf";
    write_gguf_model_mix(path, checkpoint.config, tensors, vocab, mix);
    expect_same_greedy(mix, path, prompt, 24);
  }
  const std::string shrunk = output_dir(dir) + "/greedy-shrunk.gguf";
  const auto pruned = test::run_llmpress("prune -m " + model_dir + " -o " + shrunk +
                                   " --method channels --ratio 0.25 --type Q8_0 --no-progress" + calib);
  ASSERT_EQ(pruned.exit_code, 0) << pruned.err;
  expect_same_greedy("MLP channels pruned, Q8_0", shrunk, prompt, 24);
  const std::string headless = output_dir(dir) + "/greedy-heads.gguf";
  const auto heads = test::run_llmpress("prune -m " + model_dir + " -o " + headless +
                                  " --method heads --ratio 0.5 --type F16 --no-progress" + calib);
  ASSERT_EQ(heads.exit_code, 0) << heads.err;
  expect_same_greedy("attention heads pruned, F16", headless, prompt, 24);
}

}  // namespace
}  // namespace llmpress

// Runs llama.cpp on GGUF files we write: llama-perplexity from LLMPRESS_LLAMACPP_BIN (a llama.cpp build;
// never part of this repository) when that is set, otherwise node-llama-cpp's prebuilt llama.cpp that
// scripts/setup.sh installs (tests/llamacpp_node.h). Skips when neither is there.
#include <cstdio>
#include <cstdlib>

#include "export_test_util.h"
#include "llamacpp_node.h"
#include "llmpress/export/gguf_writer.h"
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

}  // namespace
}  // namespace llmpress

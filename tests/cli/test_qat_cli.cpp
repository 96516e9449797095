// qat and finetune as a user runs them: EfficientQAT onto Q2_K blocks that llama.cpp runs with our
// perplexity, Block-AP lowering every layer's reconstruction error, data-free LLM-QAT onto a GPTQ
// checkpoint, a run at learning rate 0 that leaves the PTQ model as it was, PEQA changing scales and no
// code, and errors before any work.
#include <gtest/gtest.h>

#include <regex>

#include "cli_test_util.h"
#include "llamacpp_node.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/quant/ggml_codes.h"
#include "llmpress/quant/ggml_block_header.h"
#include "llmpress/quant/ggml_weight.h"
#include "llmpress/quant/int_grid.h"
#include "pipeline/pipeline_test_util.h"

namespace llmpress {
namespace {

using test::run_llmpress;
constexpr const char* kTeacher = "models/gutenberg-dev-llama-5m-long";

std::string shared(const char* relative) { return test::shared_path(relative); }
std::string calib() { return " --calib " + shared(test::kGutenbergCalib) + " --nsamples 16 --seqlen 128"; }
std::string train_text() { return " -f " + shared(test::kGutenbergCalib); }
const std::string kQuick = " --steps 3 --batch-size 2 --train-seqlen 64 --no-progress -t 2";

// Every decoder linear layer of a model file, as stored.
std::vector<std::shared_ptr<LinearWeight>> linears(const std::string& path) {
  const Checkpoint c = open_checkpoint(path);
  std::vector<std::shared_ptr<LinearWeight>> out;
  for (int64_t i = 0; i < c.config.num_layers; ++i) {
    const DecoderLayer layer = Transformer::load_layer(c, i);
    for (const std::string& name : DecoderLayer::linear_names()) out.push_back(layer.linear(name).weight);
  }
  return out;
}

TEST(CliQat, EfficientQatOntoQ2kBlocksRunsInLlamaCppWithOurPerplexity) {
  LLMPRESS_REQUIRE_SHARED(kTeacher);
  test::TempDir dir;
  const auto r = run_llmpress("qat -m " + shared(kTeacher) + " -o " + dir.file("q2k.gguf") + " --type Q2_K" + calib() +
                              train_text() + kQuick + " --block-epochs 2 --block-weight-lr 3e-4 --block-quant-lr 1e-3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("stage 1: block-ap"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("42 fake-quantized layers trained 3 steps"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Q2_K"), std::string::npos) << r.out;
  // Block-AP lowers the reconstruction error of every layer.
  const std::regex line("layer (\\d+): block-ap \\d+ steps, reconstruction mse ([0-9.e+-]+) -> ([0-9.e+-]+)");
  int layers = 0;
  for (std::sregex_iterator it(r.err.begin(), r.err.end(), line), end; it != end; ++it, ++layers)
    EXPECT_LT(std::stod((*it)[3]), std::stod((*it)[2])) << it->str();
  EXPECT_EQ(layers, 6) << r.err;
  for (const auto& w : linears(dir.file("q2k.gguf"))) EXPECT_EQ(w->kind(), "ggml");
  const double ours = test::eval_perplexity(dir.file("q2k.gguf"), 8, /*llamacpp=*/true);
  if (test::llamacpp_unavailable().empty()) {
    const auto theirs = test::llamacpp_perplexity(dir.file("q2k.gguf"), shared(test::kGutenbergEval), 256, 8);
    ASSERT_TRUE(theirs.has_value());
    EXPECT_NEAR(*theirs, ours, 0.01 * ours);
  }
}

TEST(CliQat, DataFreeLlmQatOntoAGptqCheckpoint) {
  LLMPRESS_REQUIRE_SHARED(kTeacher);
  test::TempDir dir;
  const auto r = run_llmpress("qat -m " + shared(kTeacher) + " -o " + dir.file("int2") + " --format gptq --bits 2 "
                              "--group 64 --method llm-qat --generate 8" + kQuick);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("data-free: the teacher writes 8 rows of 65 tokens"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("on 8 teacher-written rows of 64"), std::string::npos) << r.out;
  for (const auto& w : linears(dir.file("int2"))) {
    ASSERT_EQ(w->kind(), "int");
    EXPECT_EQ(dynamic_cast<const QuantizedWeight&>(*w).spec().bits, 2);
  }
  EXPECT_LT(test::eval_perplexity(dir.file("int2"), 4), 100);
}

// Training at learning rate 0 (every weight and parameter trainable) writes the PTQ model's layers.
TEST(CliQat, LearningRateZeroLeavesThePtqModel) {
  LLMPRESS_REQUIRE_SHARED(kTeacher);
  test::TempDir dir;
  const std::string model = shared(kTeacher);
  ASSERT_EQ(run_llmpress("quantize -m " + model + " -o " + dir.file("rtn.gguf") + " --type Q3_K_M --method rtn --no-progress").exit_code, 0);
  const auto r = run_llmpress("qat -m " + model + " -o " + dir.file("qat.gguf") + " --type Q3_K_M --method llm-qat "
                              "--init rtn --lr 0" + train_text() + kQuick);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto ptq = linears(dir.file("rtn.gguf")), qat = linears(dir.file("qat.gguf"));
  ASSERT_EQ(ptq.size(), qat.size());
  for (size_t i = 0; i < ptq.size(); ++i)
    EXPECT_TRUE(at::equal(dynamic_cast<const GgmlWeight&>(*ptq[i]).bytes(), dynamic_cast<const GgmlWeight&>(*qat[i]).bytes()))
        << "linear " << i;
}

// PEQA trains the scales of a quantized model: its codes stay, its scales move, the format is kept.
TEST(CliFinetune, PeqaChangesScalesAndNoCode) {
  LLMPRESS_REQUIRE_SHARED(kTeacher);
  test::TempDir dir;
  ASSERT_EQ(run_llmpress("quantize -m " + shared(kTeacher) + " -o " + dir.file("q4k.gguf") + " --type Q4_K_M --method rtn "
                         "--no-progress").exit_code, 0);
  const auto r = run_llmpress("finetune -m " + dir.file("q4k.gguf") + " -o " + dir.file("tuned.gguf") + " -f " +
                              test::shared_path("data/tinyshakespeare.txt") + kQuick + " --lr 1e-2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Same format out: the untouched embeddings and head keep their blocks too (the file is the input's size).
  EXPECT_NEAR(double(std::filesystem::file_size(dir.file("tuned.gguf"))),
              double(std::filesystem::file_size(dir.file("q4k.gguf"))), 1024.0);
  const auto before = linears(dir.file("q4k.gguf")), after = linears(dir.file("tuned.gguf"));
  ASSERT_EQ(before.size(), after.size());
  int64_t scales_changed = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    const auto& a = dynamic_cast<const GgmlWeight&>(*before[i]);
    const auto& b = dynamic_cast<const GgmlWeight&>(*after[i]);
    ASSERT_EQ(a.type(), b.type());
    const int64_t block_bytes = tensor_type_info(a.type()).block_bytes, elements = tensor_type_info(a.type()).block_elements;
    const uint8_t* x = a.bytes().data_ptr<uint8_t>();
    const uint8_t* y = b.bytes().data_ptr<uint8_t>();
    for (int64_t blk = 0; blk < a.bytes().numel() / block_bytes; ++blk) {
      for (int e = 0; e < int(elements); ++e)
        ASSERT_EQ(read_block_code(a.type(), x + blk * block_bytes, e), read_block_code(b.type(), y + blk * block_bytes, e));
      const BlockHeader ha = read_block_header(a.type(), x + blk * block_bytes);
      const BlockHeader hb = read_block_header(b.type(), y + blk * block_bytes);
      EXPECT_EQ(ha.min, hb.min);  // mins are not scales
      EXPECT_EQ(ha.mins, hb.mins);
      scales_changed += ha.d != hb.d || ha.scales != hb.scales;
    }
  }
  EXPECT_GT(scales_changed, 0);
}

TEST(CliQat, ErrorsComeBeforeAnyWork) {
  LLMPRESS_REQUIRE_SHARED(kTeacher);
  test::TempDir dir;
  const std::string model = shared(kTeacher);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"qat -m " + model + " -o " + dir.file("x.gguf") + " --type Q2_K --bits 2" + train_text(), "integer grid"},
      {"qat -m " + model + " -o " + dir.file("x.gguf") + " --method qlora" + train_text(), "efficientqat or llm-qat"},
      {"qat -m " + model + " -o " + dir.file("x.gguf") + " --type Q2_K" + train_text(), "calibration"},
      {"qat -m " + model + " -o " + dir.file("x.gguf") + " --method llm-qat", "generate"},
      {"qat -m " + model + " -o " + dir.file("x.gguf") + " --method llm-qat --learn most" + train_text(), "learn must be"},
      {"finetune -m " + model + " -o " + dir.file("x.gguf") + train_text(), "trains a quantized model"},
  };
  for (const auto& [args, message] : cases) {
    const auto r = run_llmpress(args + " --no-progress");
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << "\n" << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf")));
  }
}

}  // namespace
}  // namespace llmpress

// finetune --method lora / qa-lora as a user runs them on a quantized GGUF: the adapter GGUF that llama.cpp
// applies (its perplexity with --lora equals ours within 1%), the same adapter as a PEFT folder, a merge that
// re-quantizes, QA-LoRA merged into Q4_1 block mins with every code kept (and the merged model scoring as the
// unmerged adapter does), and errors before any work.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli_test_util.h"
#include "llamacpp_node.h"
#include "llmpress/export/lora_adapter.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/quant/ggml_block_header.h"
#include "llmpress/quant/ggml_codes.h"
#include "llmpress/quant/ggml_weight.h"
#include "pipeline/pipeline_test_util.h"

namespace llmpress {
namespace {

using test::run_llmpress;
constexpr const char* kTeacher = "models/gutenberg-dev-llama-5m-long";
constexpr const char* kShakespeare = "data/tinyshakespeare.txt";
constexpr int kContext = 128, kChunks = 16;

std::string shared(const char* relative) { return test::shared_path(relative); }
const std::string kTrain = std::string(" -f ") + test::shared_path(kShakespeare) +
                           " --steps 20 --batch-size 8 --train-seqlen 64 --lr 1e-3 --rank 4 --no-progress -t 2";

std::string quantized(const test::TempDir& dir, const std::string& type) {
  const std::string path = dir.file(type + ".gguf");
  const auto r = run_llmpress("quantize -m " + shared(kTeacher) + " -o " + path + " --type " + type + " --method rtn --no-progress");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return path;
}

// Our perplexity on the Shakespeare text in llama.cpp's convention, with an adapter when given.
double our_perplexity(const std::string& model, const std::string& lora = "") {
  const auto r = run_llmpress("perplexity -m " + model + " -f " + shared(kShakespeare) + " --llamacpp -c " +
                              std::to_string(kContext) + " --chunks " + std::to_string(kChunks) + " --json --no-progress" +
                              (lora.empty() ? "" : " --lora " + lora));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(r.out, nullptr, false).value("perplexity", 0.0);
}

TEST(CliLora, AdapterOnAQuantizedBaseRunsInLlamaCppWithOurPerplexity) {
  LLMPRESS_REQUIRE_SHARED(kTeacher);
  LLMPRESS_REQUIRE_SHARED(kShakespeare);
  test::TempDir dir;
  const std::string base = quantized(dir, "Q4_0");
  const auto gguf = run_llmpress("finetune -m " + base + " --method lora -o " + dir.file("adapter.gguf") + kTrain);
  ASSERT_EQ(gguf.exit_code, 0) << gguf.err;
  EXPECT_NE(gguf.out.find("42 adapters (rank 4) trained 20 steps"), std::string::npos) << gguf.out;
  EXPECT_NE(gguf.out.find("llama.cpp GGUF LoRA adapter: 42 linears, rank 4"), std::string::npos) << gguf.out;
  const auto peft = run_llmpress("finetune -m " + base + " --method lora -o " + dir.file("peft") + kTrain);
  ASSERT_EQ(peft.exit_code, 0) << peft.err;
  EXPECT_TRUE(std::filesystem::exists(dir.file("peft/adapter_config.json")));

  // The same training (same seed) written both ways holds the same factors.
  const ModelConfig config = open_checkpoint(base).config;
  const LoraAdapter from_gguf = read_lora_adapter(dir.file("adapter.gguf"), config);
  const LoraAdapter from_peft = read_lora_adapter(dir.file("peft"), config);
  ASSERT_EQ(from_gguf.tensors.size(), 42u);
  ASSERT_EQ(from_peft.tensors.size(), 42u);
  for (size_t i = 0; i < 42; ++i) {
    EXPECT_TRUE(at::equal(from_gguf.tensors[i].a, from_peft.tensors[i].a)) << from_gguf.tensors[i].module;
    EXPECT_TRUE(at::equal(from_gguf.tensors[i].b, from_peft.tensors[i].b)) << from_gguf.tensors[i].module;
  }

  const double untuned = our_perplexity(base), tuned = our_perplexity(base, dir.file("adapter.gguf"));
  EXPECT_LT(tuned, untuned);  // trained on this text
  EXPECT_NEAR(our_perplexity(base, dir.file("peft")), tuned, 1e-6 * tuned);
  if (test::llamacpp_node_unavailable().empty()) {
    const auto theirs = test::llamacpp_node_perplexity(base, shared(kShakespeare), kContext, kChunks, dir.file("adapter.gguf"));
    ASSERT_TRUE(theirs.has_value());
    EXPECT_NEAR(theirs->ppl, tuned, 0.01 * tuned);
    const auto theirs_untuned = test::llamacpp_node_perplexity(base, shared(kShakespeare), kContext, kChunks);
    ASSERT_TRUE(theirs_untuned.has_value());
    EXPECT_NEAR(theirs_untuned->ppl, untuned, 0.01 * untuned);
    EXPECT_LT(theirs->ppl, theirs_untuned->ppl);
  }

  // --merge writes the model, each tuned linear re-quantized onto Q4_0.
  const auto merged = run_llmpress("finetune -m " + base + " --method lora --merge -o " + dir.file("merged.gguf") + kTrain);
  ASSERT_EQ(merged.exit_code, 0) << merged.err;
  EXPECT_NE(merged.out.find("42 re-quantized onto their base's format"), std::string::npos) << merged.out;
  const Checkpoint out = open_checkpoint(dir.file("merged.gguf"));
  EXPECT_EQ(out.tensor("model.layers.0.self_attn.q_proj.weight").type, TensorType::Q4_0);
  EXPECT_LT(our_perplexity(dir.file("merged.gguf")), untuned);
}

TEST(CliLora, QaLoraMergesIntoQ4_1BlockMinsKeepingEveryCode) {
  LLMPRESS_REQUIRE_SHARED(kTeacher);
  LLMPRESS_REQUIRE_SHARED(kShakespeare);
  test::TempDir dir;
  const std::string base = quantized(dir, "Q4_1");
  const auto adapter = run_llmpress("finetune -m " + base + " --method qa-lora -o " + dir.file("qa.gguf") + kTrain);
  ASSERT_EQ(adapter.exit_code, 0) << adapter.err;
  const auto merged = run_llmpress("finetune -m " + base + " --method qa-lora --merge -o " + dir.file("merged.gguf") + kTrain);
  ASSERT_EQ(merged.exit_code, 0) << merged.err;
  EXPECT_NE(merged.out.find("merged: 42 adapters into Q4_1 / Q5_1 block mins"), std::string::npos) << merged.out;

  const Checkpoint before = open_checkpoint(base), after = open_checkpoint(dir.file("merged.gguf"));
  int64_t mins_changed = 0;
  for (int64_t i = 0; i < before.config.num_layers; ++i) {
    const DecoderLayer a = Transformer::load_layer(before, i), b = Transformer::load_layer(after, i);
    for (const std::string& name : DecoderLayer::linear_names()) {
      const auto& x = dynamic_cast<const GgmlWeight&>(*a.linear(name).weight);
      const auto& y = dynamic_cast<const GgmlWeight&>(*b.linear(name).weight);
      ASSERT_EQ(y.type(), TensorType::Q4_1);
      const TensorTypeInfo& info = tensor_type_info(TensorType::Q4_1);
      for (int64_t blk = 0; blk < x.bytes().numel() / info.block_bytes; ++blk) {
        const uint8_t* p = x.bytes().data_ptr<uint8_t>() + blk * info.block_bytes;
        const uint8_t* q = y.bytes().data_ptr<uint8_t>() + blk * info.block_bytes;
        for (int e = 0; e < 32; ++e) ASSERT_EQ(read_block_code(TensorType::Q4_1, p, e), read_block_code(TensorType::Q4_1, q, e));
        EXPECT_EQ(read_block_header(TensorType::Q4_1, p).d, read_block_header(TensorType::Q4_1, q).d);
        mins_changed += read_block_header(TensorType::Q4_1, p).min != read_block_header(TensorType::Q4_1, q).min;
      }
    }
  }
  EXPECT_GT(mins_changed, 0);
  EXPECT_NEAR(double(std::filesystem::file_size(dir.file("merged.gguf"))), double(std::filesystem::file_size(base)), 1024.0);
  // The merged model is the unmerged one up to the f16 storage of the mins.
  const double unmerged = our_perplexity(base, dir.file("qa.gguf")), merged_ppl = our_perplexity(dir.file("merged.gguf"));
  EXPECT_NEAR(merged_ppl, unmerged, 1e-3 * unmerged);
  EXPECT_LT(merged_ppl, our_perplexity(base));
  if (test::llamacpp_node_unavailable().empty()) {
    const auto theirs = test::llamacpp_node_perplexity(dir.file("merged.gguf"), shared(kShakespeare), kContext, kChunks);
    ASSERT_TRUE(theirs.has_value());
    EXPECT_NEAR(theirs->ppl, merged_ppl, 0.01 * merged_ppl);
  }
}

TEST(CliLora, ErrorsComeBeforeAnyWork) {
  LLMPRESS_REQUIRE_SHARED(kTeacher);
  LLMPRESS_REQUIRE_SHARED(kShakespeare);
  test::TempDir dir;
  const std::string model = shared(kTeacher);
  const std::string data = " -f " + shared(kShakespeare);
  std::ofstream(dir.file("recipe.yaml")) << "model: " << model << "\nstages:\n  - method: lora\n    data: "
                                         << shared(kShakespeare) << "\n  - method: rtn\n    bits: 4\noutput: {path: "
                                         << dir.file("x.gguf") << "}\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"finetune -m " + model + " --method lora --rank 0 -o " + dir.file("x.gguf") + data, "rank must be at least 1"},
      {"finetune -m " + model + " --method lora --dropout 1 -o " + dir.file("x.gguf") + data, "dropout"},
      {"finetune -m " + model + " --method lora --target 'nothing' -o " + dir.file("x.gguf") + data, "matches no decoder linear"},
      {"finetune -m " + model + " --method lora --target '(' -o " + dir.file("x.gguf") + data, "not a valid regex"},
      {"finetune -m " + model + " --method lora --format gptq -o " + dir.file("x") + data, "PEFT folder"},
      {"finetune -m " + model + " --method qa-lora --group 0 -o " + dir.file("x.gguf") + data, "group"},
      {"run " + dir.file("recipe.yaml"), "follows a LoRA stage"},
      {"perplexity -m " + model + " -f " + shared(kShakespeare) + " --lora " + dir.file("recipe.yaml"), "recipe.yaml"},
  };
  for (const auto& [args, message] : cases) {
    const auto r = run_llmpress(args + " --no-progress");
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << "\n" << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf")));
    EXPECT_FALSE(std::filesystem::exists(dir.file("x")));
  }
}

}  // namespace
}  // namespace llmpress

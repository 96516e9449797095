// The compositions a pipeline must handle, each run end to end on gutenberg-dev-llama-5m and read
// back from the files it wrote.
#include <gtest/gtest.h>

#include <filesystem>

#include "llmpress/core/error.h"
#include "llmpress/lowrank/low_rank_weight.h"
#include "llmpress/model/sparse_weight.h"
#include "llmpress/pipeline/method.h"
#include "llmpress/prune/sparsity_report.h"
#include "llmpress/quant/ggml_weight.h"
#include "llmpress/quant/int_grid.h"
#include "llamacpp_node.h"
#include "pipeline/pipeline_test_util.h"

namespace llmpress {
namespace {

// Every decoder linear of a written model, loaded as the kind the file holds.
std::vector<std::pair<std::string, std::shared_ptr<LinearWeight>>> written_linears(const std::string& path) {
  const Checkpoint checkpoint = open_checkpoint(path);
  std::vector<std::pair<std::string, std::shared_ptr<LinearWeight>>> out;
  for (int64_t i = 0; i < checkpoint.config.num_layers; ++i) {
    const DecoderLayer layer = Transformer::load_layer(checkpoint, i, at::kCPU);
    for (const std::string& name : DecoderLayer::linear_names())
      out.push_back({"model.layers." + std::to_string(i) + "." + name, layer.linear(name).weight});
  }
  return out;
}

TEST(Compositions, SparseGpt24ThenGptqInt4KeepsThePatternInGptqAndGguf) {
  LLMPRESS_REQUIRE_GUTENBERG();
  test::TempDir dir;
  Recipe recipe = test::gutenberg_recipe(dir.file("gptq"));
  recipe.stages = {test::stage("sparsegpt", {{"pattern", "2:4"}}), test::stage("gptq", {{"bits", 4}, {"group", 128}})};
  recipe.output.format = "gptq";
  const PipelineReport report = test::run_quietly(recipe);
  ASSERT_EQ(report.stages.size(), 2u);
  for (const LinearSummary& s : report.output.linears) {
    EXPECT_EQ(s.kind, "sparse") << s.name;
    EXPECT_EQ(s.detail, "int int4 asym g128") << s.name;
    EXPECT_TRUE(s.groups > 0 && s.groups == s.compliant_groups) << s.name;
  }
  // The GPTQ checkpoint dequantizes to 2:4 matrices.
  for (const auto& [name, weight] : written_linears(dir.file("gptq"))) {
    EXPECT_EQ(weight->kind(), "sparse") << name;  // integer codes, recognized as pruned when loaded
    EXPECT_EQ(weight->pruning_mask().n, 2) << name;
    EXPECT_EQ(weight->pruning_mask().m, 4) << name;
    EXPECT_EQ(detect_nm_pattern(weight->dense()), "2:4") << name;
  }
  // The same layers as a Q8_0 GGUF: zeros stay exact zeros (Q8_0 is symmetric).
  recipe.output = {};
  recipe.output.path = dir.file("model-q8.gguf");
  recipe.output.type = "Q8_0";
  test::run_quietly(recipe);
  for (const auto& [name, weight] : written_linears(dir.file("model-q8.gguf"))) {
    EXPECT_EQ(weight->kind(), "sparse") << name;  // recognized as pruned when loaded
    EXPECT_EQ(detect_nm_pattern(weight->dense()), "2:4") << name;
  }
  // llama.cpp runs it, with the perplexity ours gives on the same file and convention.
  const double ours = test::eval_perplexity(dir.file("model-q8.gguf"), 8, /*llamacpp=*/true);
  EXPECT_LT(ours, 30.0);
  if (test::llamacpp_unavailable().empty()) {
    const auto theirs = test::llamacpp_perplexity(dir.file("model-q8.gguf"), test::shared_path(test::kGutenbergEval), 256, 8);
    ASSERT_TRUE(theirs.has_value());
    EXPECT_NEAR(*theirs, ours, 0.01 * ours);
    std::printf("  2:4 + int4 as Q8_0: perplexity ours %.4f, llama.cpp %.4f\n", ours, *theirs);
  } else {
    std::printf("  llama.cpp not run: %s\n", test::llamacpp_unavailable().c_str());
  }
}

TEST(Compositions, SvdLlmThenGptqQuantizesEachFactorBetterThanRtn) {
  LLMPRESS_REQUIRE_GUTENBERG();
  test::TempDir dir;
  double total_error[2] = {0, 0};
  for (int gptq = 0; gptq < 2; ++gptq) {
    Recipe recipe = test::gutenberg_recipe(dir.file(gptq ? "gptq" : "rtn"));
    recipe.stages = {test::stage("svd-llm", {{"ratio", 0.8}}),
                     test::stage(gptq ? "gptq" : "rtn", {{"bits", 4}, {"group", 64}})};
    RunOptions options;
    options.measure_errors = true;
    const PipelineReport report = test::run_quietly(recipe, options);
    int64_t factorized = 0;
    for (const LinearSummary& s : report.output.linears) {
      if (s.kind != "lowrank") continue;
      ++factorized;
      EXPECT_EQ(s.detail, "rank " + std::to_string(s.rank) + " (int factors)") << s.name;
      // Packed size: 4-bit codes plus fp16 scales and 4-bit zeros per group of 64, for both factors.
      const int64_t values = s.rank * (s.out + s.in);
      EXPECT_LT(s.storage_bits, values * 5) << s.name;
      EXPECT_GT(s.storage_bits, values * 4) << s.name;
    }
    EXPECT_GT(factorized, 0);
    for (const LinearReport& r : report.stages[1].linears) total_error[gptq] += r.output_error;
    // The factorized folder reads back with both factors.
    for (const auto& [name, weight] : written_linears(dir.file(gptq ? "gptq" : "rtn")))
      if (name.find("down_proj") != std::string::npos) EXPECT_EQ(weight->kind(), "lowrank") << name;
  }
  EXPECT_LT(total_error[1], total_error[0] * 0.8) << "GPTQ on the factors should beat RTN on them";
}

TEST(Compositions, HeadPruningThenFormatAwareGptqQ4KM) {
  LLMPRESS_REQUIRE_GUTENBERG();
  test::TempDir dir;
  Recipe recipe = test::gutenberg_recipe(dir.file("heads-q4km.gguf"));
  recipe.stages = {test::stage("heads", {{"ratio", 0.5}}), test::stage("gptq", {{"type", "Q4_K_M"}})};
  recipe.output.type = "Q4_K_M";
  const PipelineReport report = test::run_quietly(recipe);
  const Checkpoint gguf = open_checkpoint(dir.file("heads-q4km.gguf"));
  EXPECT_EQ(gguf.config.num_heads, 2);
  EXPECT_EQ(gguf.config.num_kv_heads, 1);
  std::set<std::string> types;
  for (const auto& [name, weight] : written_linears(dir.file("heads-q4km.gguf"))) {
    ASSERT_EQ(weight->kind(), "ggml") << name;
    types.insert(tensor_type_name(dynamic_cast<const GgmlWeight&>(*weight).type()));
  }
  // o_proj's rows are 2 heads x 64 = 128 wide now, too narrow for a k-quant: llama-quantize's fallback.
  EXPECT_EQ(types, (std::set<std::string>{"Q4_K", "Q5_0", "Q6_K"}));
  bool fallback_noted = false;
  for (const std::string& note : report.output.notes) fallback_noted = fallback_noted || note.find("Q5_0") != std::string::npos;
  EXPECT_TRUE(fallback_noted);
  const double ppl = test::eval_perplexity(dir.file("heads-q4km.gguf"), 8, /*llamacpp=*/true);
  EXPECT_GT(ppl, 10.0);
  EXPECT_LT(ppl, 40.0);
  // llama.cpp runs the shrunk, format-aware-GPTQ file and agrees with us within 1%.
  if (test::llamacpp_unavailable().empty()) {
    const auto theirs = test::llamacpp_perplexity(dir.file("heads-q4km.gguf"), test::shared_path(test::kGutenbergEval), 256, 8);
    ASSERT_TRUE(theirs.has_value());
    EXPECT_NEAR(*theirs, ppl, 0.01 * ppl);
    std::printf("  heads 50%% + GPTQ Q4_K_M: perplexity ours %.4f, llama.cpp %.4f\n", ppl, *theirs);
  } else {
    std::printf("  llama.cpp not run: %s\n", test::llamacpp_unavailable().c_str());
  }
}

TEST(Compositions, LayerRemovalThenQuantization) {
  LLMPRESS_REQUIRE_GUTENBERG();
  test::TempDir dir;
  Recipe recipe = test::gutenberg_recipe(dir.file("short-gptq"));
  recipe.stages = {test::stage("layers", {{"count", 1}}), test::stage("rtn", {{"bits", 4}, {"group", 128}})};
  recipe.output.format = "gptq";
  test::run_quietly(recipe);
  const auto linears = written_linears(dir.file("short-gptq"));
  EXPECT_EQ(linears.size(), 5u * 7u);
  for (const auto& [name, weight] : linears) EXPECT_EQ(weight->kind(), "int") << name;
  EXPECT_LT(test::eval_perplexity(dir.file("short-gptq"), 8), 40.0);
}

TEST(Compositions, CpIsAMethodOfItsOwnFileRunAndExportedDense) {
  LLMPRESS_REQUIRE_GUTENBERG();
  EXPECT_EQ(find_method("cp").family, "lowrank");
  test::TempDir dir;
  Recipe recipe = test::gutenberg_recipe(dir.file("cp"));
  recipe.calibration = {};
  recipe.stages = {test::stage("cp", {{"ratio", 0.5}, {"iterations", 10}})};
  recipe.output.format = "hf";
  const PipelineReport report = test::run_quietly(recipe);
  int64_t cp_layers = 0;
  for (const LinearSummary& s : report.output.linears) {
    if (s.kind != "cp") continue;
    ++cp_layers;
    EXPECT_LE(s.parameters, s.out * s.in / 2 + 1) << s.name;
  }
  EXPECT_EQ(cp_layers, 6 * 4);  // q, k, v, o of every layer
  EXPECT_LT(report.output.parameters, report.parameters_before);
  // Exported dense: a plain Hugging Face folder whose attention weights are the CP reconstructions.
  for (const auto& [name, weight] : written_linears(dir.file("cp"))) EXPECT_EQ(weight->kind(), "dense") << name;
  const double ppl = test::eval_perplexity(dir.file("cp"), 4);
  EXPECT_TRUE(std::isfinite(ppl));
}

}  // namespace
}  // namespace llmpress

namespace llmpress {
namespace {

TEST(Compositions, PrunedModelsAsCompressedTensorsFoldersReadBackExactly) {
  LLMPRESS_REQUIRE_GUTENBERG();
  test::TempDir dir;
  for (const auto& [options, format] : {std::pair{nlohmann::json{{"pattern", "2:4"}}, "sparse-24-bitmask"},
                                        std::pair{nlohmann::json{{"sparsity", 0.6}}, "sparse-bitmask"}}) {
    Recipe recipe = test::gutenberg_recipe(dir.file(std::string("dense-") + format));
    recipe.calibration = {};
    recipe.stages = {test::stage("magnitude", options)};
    test::run_quietly(recipe);
    recipe.output.path = dir.file(format);
    recipe.output.format = "sparse";
    const PipelineReport report = test::run_quietly(recipe);
    EXPECT_NE(report.output.description.find(format), std::string::npos) << report.output.description;
    const auto dense = written_linears(dir.file(std::string("dense-") + format));
    const auto sparse = written_linears(dir.file(format));
    ASSERT_EQ(dense.size(), sparse.size());
    for (size_t i = 0; i < dense.size(); ++i)
      EXPECT_TRUE(at::equal(dense[i].second->dense(), sparse[i].second->dense())) << dense[i].first;
    EXPECT_LT(report.output.bytes, 0.65 * double(std::filesystem::file_size(
                                              dir.file(std::string("dense-") + format + "/model.safetensors"))));
  }
}

}  // namespace
}  // namespace llmpress

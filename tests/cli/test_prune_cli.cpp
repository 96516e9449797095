// llmpress prune end to end on stories260K: outputs load, hold the reported sparsity and pattern,
// and keep a sane perplexity; errors are clear.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <optional>

#include "cli/cli_test_util.h"
#include "llamacpp_node.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/prune/sparsity_report.h"

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

const char* kModel = "models/stories260K/stories260K.bin";
const char* kCalib = "data/tinystories-calib.txt";
const char* kEval = "data/tinystories-eval.txt";

TEST(CliPrune, SparseGpt24WritesCompliantCheckpointAndGguf) {
  LLMPRESS_REQUIRE_SHARED(kModel);
  LLMPRESS_REQUIRE_SHARED(kCalib);
  const std::string model = test::shared_path(kModel), eval = test::shared_path(kEval);
  test::TempDir dir;
  const std::string common = " --calib " + test::shared_path(kCalib) + " --nsamples 8 --seqlen 64 --no-progress";
  const RunResult r = llmpress("prune -m " + model + " -o " + dir.file("sp") + " --method sparsegpt --pattern 2:4 --verbose" + common);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("2:4 compliance of pruned layers: 56640 of 56640 groups (all)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model.layers.4.mlp.down_proj"), std::string::npos) << r.out;

  // The written weights are what the summary says: every decoder linear layer 2:4, the rest dense.
  const Checkpoint out = open_checkpoint(dir.file("sp"));
  for (const auto& [name, raw] : out.tensors) {
    const at::Tensor w = out.load(name);
    if (name.find("model.layers.") == 0 && name.find("_proj") != std::string::npos)
      EXPECT_EQ(detect_nm_pattern(w), "2:4") << name;
    else if (w.dim() == 2)
      EXPECT_LT(measure_sparsity(w).sparsity(), 0.01) << name;
  }
  // info --sparsity reads the same back from the files.
  const RunResult info = llmpress("info -m " + dir.file("sp") + " --sparsity --no-tensors");
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("50.00% of decoder linear weights"), std::string::npos) << info.out;
  const size_t line = info.out.find("model.layers.2.mlp.up_proj.weight");
  ASSERT_NE(line, std::string::npos) << info.out;
  EXPECT_NE(info.out.substr(line, info.out.find('\n', line) - line).find("50.00% 2:4"), std::string::npos) << info.out;

  // stories260K is tiny (64 wide): 2:4 costs it a lot, but far less with SparseGPT than by magnitude.
  const RunResult m = llmpress("prune -m " + model + " -o " + dir.file("mag") + " --method magnitude --pattern 2:4" + common);
  ASSERT_EQ(m.exit_code, 0) << m.err;
  const double dense = perplexity_of(model, eval), pruned = perplexity_of(dir.file("sp"), eval);
  const double magnitude = perplexity_of(dir.file("mag"), eval);
  EXPECT_GT(pruned, dense);
  EXPECT_LT(pruned, magnitude) << "dense " << dense << ", sparsegpt 2:4 " << pruned << ", magnitude 2:4 " << magnitude;

  // GGUF output of the same job (F32: zeros kept exactly) scores the same.
  const RunResult g = llmpress("prune -m " + model + " -o " + dir.file("sp.gguf") +
                               " --method sparsegpt --pattern 2:4" + common);
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_NEAR(perplexity_of(dir.file("sp.gguf"), eval), pruned, 1e-3 * pruned);
}

TEST(CliPrune, MethodsOrderAndSkip) {
  LLMPRESS_REQUIRE_SHARED(kModel);
  LLMPRESS_REQUIRE_SHARED(kCalib);
  const std::string model = test::shared_path(kModel), eval = test::shared_path(kEval);
  test::TempDir dir;
  const std::string common = " --sparsity 0.5 --calib " + test::shared_path(kCalib) + " --nsamples 8 --seqlen 64 --no-progress";
  std::map<std::string, double> ppl;
  for (const char* method : {"magnitude", "wanda", "sparsegpt"}) {
    const RunResult r = llmpress(std::string("prune -m ") + model + " -o " + dir.file(method) + " --method " + method + common);
    ASSERT_EQ(r.exit_code, 0) << method << ": " << r.err;
    EXPECT_NE(r.out.find("pruned linear layers: 113280 of 226560 weights zero (50.00%)"), std::string::npos) << r.out;
    ppl[method] = perplexity_of(dir.file(method), eval);
  }
  EXPECT_LT(ppl["sparsegpt"], ppl["magnitude"]);
  EXPECT_LT(ppl["wanda"], ppl["magnitude"]);

  // --skip keeps the matching layers dense; they are listed as skipped.
  const RunResult s = llmpress("prune -m " + model + " -o " + dir.file("skip") + " --method magnitude --skip 'down_proj|layers\\.0\\.' --no-progress");
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_NE(s.out.find("11 linear layers left as they were"), std::string::npos) << s.out;
  const Checkpoint out = open_checkpoint(dir.file("skip"));
  EXPECT_LT(measure_sparsity(out.load("model.layers.3.mlp.down_proj.weight")).sparsity(), 0.01);
  EXPECT_LT(measure_sparsity(out.load("model.layers.0.self_attn.q_proj.weight")).sparsity(), 0.01);
  EXPECT_EQ(measure_sparsity(out.load("model.layers.1.self_attn.q_proj.weight")).sparsity(), 0.5);

  // --sparsity-for: per-layer targets by name, first match wins.
  const RunResult f = llmpress("prune -m " + model + " -o " + dir.file("for") +
                               " --method magnitude --sparsity 0.25 --sparsity-for 'down_proj=2:4' --sparsity-for "
                               "'mlp\\.=0.75' --no-progress");
  ASSERT_EQ(f.exit_code, 0) << f.err;
  EXPECT_NE(f.out.find("compliance of pruned layers: 13760 of 13760 groups (all)"), std::string::npos) << f.out;
  const Checkpoint per = open_checkpoint(dir.file("for"));
  EXPECT_EQ(measure_sparsity(per.load("model.layers.2.self_attn.k_proj.weight")).sparsity(), 0.25);
  EXPECT_EQ(measure_sparsity(per.load("model.layers.2.mlp.gate_proj.weight")).sparsity(), 0.75);
  EXPECT_EQ(detect_nm_pattern(per.load("model.layers.2.mlp.down_proj.weight")), "2:4");
}

TEST(CliPrune, StructuredMethodsWriteSmallerModels) {
  LLMPRESS_REQUIRE_SHARED(kModel);
  LLMPRESS_REQUIRE_SHARED(kCalib);
  const std::string model = test::shared_path(kModel), eval = test::shared_path(kEval);
  test::TempDir dir;
  const std::string common = " --calib " + test::shared_path(kCalib) + " --nsamples 8 --seqlen 64 --no-progress";
  const double dense = perplexity_of(model, eval);
  struct Case {
    std::string args, out;
    int64_t heads, kv_heads, intermediate, layers;
  };
  for (const Case& c : {Case{"--method heads --ratio 0.25", "heads", 6, 3, 172, 5},
                        Case{"--method channels --ratio 0.25", "channels", 8, 4, 129, 5},
                        Case{"--method layers --count 1", "layers.gguf", 8, 4, 172, 4}}) {
    const RunResult r = llmpress("prune -m " + model + " -o " + dir.file(c.out) + " " + c.args + common);
    ASSERT_EQ(r.exit_code, 0) << c.args << ": " << r.err;
    EXPECT_NE(r.out.find("% removed)"), std::string::npos) << r.out;
    const Checkpoint out = open_checkpoint(dir.file(c.out));
    EXPECT_EQ(out.config.num_heads, c.heads) << c.args;
    EXPECT_EQ(out.config.num_kv_heads, c.kv_heads) << c.args;
    EXPECT_EQ(out.config.intermediate_size, c.intermediate) << c.args;
    EXPECT_EQ(out.config.num_layers, c.layers) << c.args;
    EXPECT_EQ(out.config.head_dim, 8) << c.args;
    const double pruned = perplexity_of(dir.file(c.out), eval);
    EXPECT_GT(pruned, dense) << c.args;
    EXPECT_LT(pruned, dense * 10) << c.args;
  }
  // 0.1 of 8 heads rounds to 1: neither whole groups of 2 nor the same number from each of 4 groups.
  const RunResult odd = llmpress("prune -m " + model + " -o " + dir.file("odd") + " --method heads --ratio 0.1" + common);
  EXPECT_EQ(odd.exit_code, 1);
  EXPECT_NE(odd.err.find("irregular"), std::string::npos) << odd.err;
}

// llama.cpp loads what prune writes and scores it as we do (LLMPRESS_LLAMACPP_BIN's llama-perplexity, or
// node-llama-cpp's llama.cpp from scripts/setup.sh; skips without either).
TEST(CliPrune, LlamaCppLoadsPrunedGgufFiles) {
  LLMPRESS_REQUIRE_LLAMACPP();
  LLMPRESS_REQUIRE_SHARED("models/gutenberg-dev-llama-5m/model.safetensors");
  LLMPRESS_REQUIRE_SHARED("data/gutenberg-dev-calib.txt");
  const std::string model = test::shared_path("models/gutenberg-dev-llama-5m");
  const std::string eval = test::shared_path("data/gutenberg-dev-eval.txt");
  const std::string common = " --calib " + test::shared_path("data/gutenberg-dev-calib.txt") +
                             " --nsamples 16 --seqlen 128 --no-progress";
  test::TempDir dir;
  for (const std::string args : {"--method sparsegpt --pattern 2:4", "--method heads --ratio 0.5",
                                 "--method channels --ratio 0.3", "--method layers --count 1"}) {
    const std::string out = dir.file("m.gguf");
    const RunResult r = llmpress("prune -m " + model + " -o " + out + " " + args + common);
    ASSERT_EQ(r.exit_code, 0) << args << ": " << r.err;
    const RunResult ours = llmpress("perplexity -m " + out + " -f " + eval + " -c 256 --chunks 8 --llamacpp --json --no-progress");
    ASSERT_EQ(ours.exit_code, 0) << ours.err;
    const double our_ppl = std::stod(ours.out.substr(ours.out.find("\"perplexity\":") + 13));
    const std::optional<double> theirs = test::llamacpp_perplexity(out, eval, 256, 8);
    ASSERT_TRUE(theirs) << args;
    const double llamacpp_ppl = *theirs;
    std::printf("  %s: llmpress %.4f, llama.cpp %.4f\n", args.c_str(), our_ppl, llamacpp_ppl);
    EXPECT_NEAR(our_ppl, llamacpp_ppl, 1e-3 * llamacpp_ppl) << args;
  }
}

TEST(CliPrune, ClearErrors) {
  LLMPRESS_REQUIRE_SHARED(kModel);
  const std::string model = test::shared_path(kModel);
  test::TempDir dir;
  const std::string out = " -o " + dir.file("x");
  RunResult r = llmpress("prune -m " + model + out + " --method wanda");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--calib"), std::string::npos) << r.err;
  r = llmpress("prune -m " + model + out + " --method magnitude --pattern 3:2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("1 <= N < M"), std::string::npos) << r.err;
  r = llmpress("prune -m " + model + out + " --method magnitude --pattern 4:8 --no-progress");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--skip"), std::string::npos) << r.err;  // down_proj has 172 inputs
  r = llmpress("prune -m " + model + out + " --method magnitude --skip '(' ");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("regular expression"), std::string::npos) << r.err;
  r = llmpress("prune -m " + model + out + " --method obs");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("unknown method"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("x")));
}

}  // namespace
}  // namespace llmpress

// --nproc through the command line: the launcher, its ranks on loopback, and what one process would
// have made: compression from the statistics of all calibration samples (summed in another order:
// the outputs agree within float rounding), training with the same global batch, and kills resumed
// to the same bytes as an uninterrupted data-parallel run.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "cli_test_util.h"
#include "llmpress/data/text.h"
#include "llmpress/eval/perplexity.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/model/transformer.h"
#include "llmpress/tokenizer/tokenizer.h"

namespace llmpress {
namespace {

namespace fs = std::filesystem;
using test::run_llmpress;

constexpr const char* kModel = "models/stories260K";

std::string model_args() {
  return "-m " + test::shared_path("models/stories260K/stories260K.bin") + " --tokenizer " +
         test::shared_path("models/stories260K/tok512.model");
}
std::string calib() { return test::shared_path("data/tinystories-calib.txt"); }

double perplexity_of(const std::string& path) {
  const Checkpoint checkpoint = open_checkpoint(path);
  const Transformer model = Transformer::load(checkpoint);
  const auto tokenizer = load_tokenizer(checkpoint);
  PerplexityOptions o;
  o.context = 128;
  o.max_chunks = 8;
  o.progress = false;
  return perplexity(model, tokenizer->encode(read_text_file(test::shared_path("data/tinystories-eval.txt"))), o)
      .perplexity;
}

// The fraction of weights that differ (after dequantizing) and the largest difference.
std::pair<double, double> weight_differences(const std::string& a, const std::string& b) {
  const Checkpoint ca = open_checkpoint(a), cb = open_checkpoint(b);
  int64_t differ = 0, total = 0;
  double worst = 0;
  for (const auto& [name, raw] : ca.tensors) {
    const at::Tensor x = ca.load(name), y = cb.load(name);
    differ += (x != y).sum().item<int64_t>();
    total += x.numel();
    worst = std::max(worst, (x - y).abs().max().item<double>());
  }
  return {double(differ) / double(total), worst};
}

TEST(CliDataParallel, CalibratedCompressionOnTwoProcessesMatchesOne) {
  LLMPRESS_REQUIRE_SHARED(kModel);
  test::TempDir dir;
  const std::string common = model_args() + " --calib " + calib() + " --nsamples 15 --seqlen 128 --no-progress ";
  for (const std::string& job : {std::string("quantize --method gptq --type Q4_K_M"),
                                 std::string("prune --method sparsegpt --sparsity 0.5"),
                                 std::string("lowrank --method svd-llm --ratio 0.6")}) {
    const std::string one = dir.file("one.gguf"), two = dir.file("two.gguf");
    auto r = run_llmpress(job + " " + common + "-t 2 -o " + one);
    ASSERT_EQ(r.exit_code, 0) << job << r.err;
    r = run_llmpress(job + " " + common + "--nproc 2 -o " + two);
    ASSERT_EQ(r.exit_code, 0) << job << r.err;
    EXPECT_NE(r.err.find("starting 2 processes"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n') > 0, true);  // one report, rank 0's
    EXPECT_EQ(r.out.find("wrote"), r.out.rfind("wrote")) << r.out;
    const auto [fraction, worst] = weight_differences(one, two);
    EXPECT_LT(fraction, job.rfind("quantize", 0) == 0 ? 0.01 : 1.0) << job;  // a few codes flip at most
    EXPECT_LT(worst, 0.05) << job;
    const double p1 = perplexity_of(one), p2 = perplexity_of(two);
    EXPECT_NEAR(p2, p1, 1e-3 * p1) << job;
    fs::remove(one);
    fs::remove(two);
  }
}

TEST(CliDataParallel, KilledCalibrationResumesToTheSameBytes) {
  LLMPRESS_REQUIRE_SHARED(kModel);
  test::TempDir dir;
  const std::string out = dir.file("q.gguf");
  const std::string base = "quantize " + model_args() + " --calib " + calib() +
                           " --nsamples 8 --seqlen 64 --method gptq --type Q4_K_M --no-progress --nproc 2 -o " + out;
  auto r = run_llmpress(base + " --work-dir " + dir.file("straight"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string straight = test::slurp(out);
  fs::remove(out);
  ::setenv("LLMPRESS_TEST_KILL_AFTER_LAYERS", "3", 1);
  r = run_llmpress(base + " --work-dir " + dir.file("work"));
  ::unsetenv("LLMPRESS_TEST_KILL_AFTER_LAYERS");
  EXPECT_EQ(r.exit_code, 137) << r.err;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_TRUE(fs::exists(dir.file("work/rank-1")));  // each rank keeps its own activations
  r = run_llmpress(base + " --work-dir " + dir.file("work") + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("resuming after 3 finished layers"), std::string::npos) << r.err;
  EXPECT_EQ(test::slurp(out), straight);
  // A work folder of a 2-process job is not resumed by 3 processes (their shares differ).
  r = run_llmpress(base + " --work-dir " + dir.file("work") + " --resume --nproc 3");
  EXPECT_NE(r.exit_code, 0);
}

TEST(CliDataParallel, TrainingOnTwoProcessesFollowsOneAndResumes) {
  LLMPRESS_REQUIRE_SHARED(kModel);
  test::TempDir dir;
  const std::string base = "train " + model_args() + " -f " + calib() +
                           " --type F32 --steps 4 -b 3 --grad-accum 2 --seqlen 64 --lr 1e-3 --no-progress ";
  const std::regex loss_line(R"(loss ([0-9.]+) -> ([0-9.]+))");
  std::smatch one, two;
  auto r1 = run_llmpress(base + "-t 2 -o " + dir.file("one.gguf"));
  ASSERT_EQ(r1.exit_code, 0) << r1.err;
  auto r2 = run_llmpress(base + "--nproc 2 -o " + dir.file("two.gguf"));
  ASSERT_EQ(r2.exit_code, 0) << r2.err;
  ASSERT_TRUE(std::regex_search(r1.out, one, loss_line)) << r1.out;
  ASSERT_TRUE(std::regex_search(r2.out, two, loss_line)) << r2.out;
  EXPECT_EQ(one.str(), two.str());  // the same losses to the printed digits
  const auto [fraction, worst] = weight_differences(dir.file("one.gguf"), dir.file("two.gguf"));
  EXPECT_LT(worst, 1e-3);

  const std::string killed = base + "--nproc 2 --save-every 1 -o " + dir.file("k.gguf");
  ::setenv("LLMPRESS_TEST_KILL_AFTER_STEPS", "2", 1);
  auto r = run_llmpress(killed);
  ::unsetenv("LLMPRESS_TEST_KILL_AFTER_STEPS");
  EXPECT_EQ(r.exit_code, 137) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("k.gguf")));
  r = run_llmpress(killed + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Bit for bit the uninterrupted data-parallel run (named alike: the name is in the file).
  const std::string resumed = test::slurp(dir.file("k.gguf"));
  fs::remove(dir.file("k.gguf"));
  r = run_llmpress(base + "--nproc 2 -o " + dir.file("k.gguf"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::slurp(dir.file("k.gguf")), resumed);
}

TEST(CliDataParallel, BadGroupsAreOneClearError) {
  LLMPRESS_REQUIRE_SHARED(kModel);
  test::TempDir dir;
  const std::string quantize = "quantize " + model_args() + " --calib " + calib() +
                               " --seqlen 64 --method gptq --type Q4_0 --no-progress -o " + dir.file("q.gguf");
  for (const std::string& extra : {std::string("--nproc 0"), std::string("--nproc 2 --world-size 2"),
                                   std::string("--process-rank 1"), std::string("--world-size 2 --process-rank 2"),
                                   std::string("--nsamples 2 --nproc 3")}) {
    const auto r = run_llmpress(quantize + " " + extra);
    EXPECT_NE(r.exit_code, 0) << extra;
    EXPECT_EQ(r.err.rfind("error: ", 0) == 0 || r.err.find("\nerror: ") != std::string::npos, true) << extra << r.err;
    EXPECT_LT(std::count(r.err.begin(), r.err.end(), '\n'), 6) << extra << r.err;
    EXPECT_FALSE(fs::exists(dir.file("q.gguf"))) << extra;
  }
}

}  // namespace
}  // namespace llmpress

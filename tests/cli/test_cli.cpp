// The llmpress binary as a user runs it: output format, exit codes, error messages.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "cli/cli_test_util.h"

namespace llmpress {
namespace {

using test::CommandResult;
using test::run_llmpress;
using test::slurp;

TEST(Cli, HelpListsEverySubcommand) {
  const CommandResult r = run_llmpress("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* sub : {"info", "perplexity", "generate"}) EXPECT_NE(r.out.find(sub), std::string::npos) << sub;
}

TEST(Cli, MissingModelFileIsOneClearErrorAndExitCodeOne) {
  const CommandResult r = run_llmpress("info -m /nonexistent/model.gguf");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/nonexistent/model.gguf"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
}

TEST(Cli, TruncatedGgufIsRejectedWithoutCrash) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K-F32.gguf");
  test::TempDir dir;
  const std::string whole = slurp(test::shared_path("models/stories260K/stories260K-F32.gguf"));
  for (size_t cut : {size_t(3), size_t(100), size_t(5000), whole.size() - 1}) {
    std::ofstream(dir.file("cut.gguf"), std::ios::binary).write(whole.data(), std::streamsize(cut));
    const CommandResult r = run_llmpress("info -m " + dir.file("cut.gguf"));
    EXPECT_EQ(r.exit_code, 1) << "cut at " << cut << ": " << r.err;
    EXPECT_NE(r.err.find("cut.gguf"), std::string::npos) << r.err;
  }
}

// Regressions from issue 13's mutation run: inputs that are not text, and sizes that would allocate
// without bound, give one clear error at once (they hung on /dev/zero or asked for 160 GB).
TEST(Cli, HostileTextInputsAndSizesAreClearErrors) {
  const char* model = "models/gutenberg-dev-llama-5m";
  LLMPRESS_REQUIRE_SHARED(model);
  const std::string m = test::shared_path(model), eval = test::shared_path("data/gutenberg-dev-eval.txt");
  test::TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"perplexity -m " + m + " -f /dev/zero", "not a regular file"},
      {"perplexity -m " + m + " -f " + dir.path(), "is a folder"},
      {"perplexity -m " + m + " -f " + m + "/model.safetensors", "not a text file"},
      {"perplexity -m " + m + " -f " + eval + " -c 100000", "more than 4 times the model's (512"},
      {"perplexity -m " + m + " -f " + eval + " --chunks 0", "--chunks must be a positive"},
      {"quantize -m " + m + " -o " + dir.file("q.gguf") + " --type Q4_K_M --calib /dev/zero", "not a regular file"},
      {"perplexity -m " + m + " -f " + eval + " -c abc", "error: "},
  };
  for (const auto& [args, message] : cases) {
    const CommandResult r = test::run_command("timeout 60 " + std::string(LLMPRESS_BINARY) + " " + args);
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_NE(r.exit_code, 124) << args << ": timed out";
    EXPECT_NE(r.err.find(message), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
    EXPECT_LT(r.err.size(), 500u) << r.err;
  }
}

// A full disk (a 2 MiB tmpfs, mounted when the tests run as root; skipped otherwise): a clear error, the
// previous output intact, and no temporary left on the full filesystem.
TEST(Cli, AFullDiskIsAClearErrorAndKeepsThePreviousOutput) {
  const char* model = "models/gutenberg-dev-llama-5m";
  LLMPRESS_REQUIRE_SHARED(model);
  test::TempDir dir;
  const std::string mount = dir.file("small");
  std::filesystem::create_directories(mount);
  if (::geteuid() != 0 || std::system(("mount -t tmpfs -o size=2m tmpfs " + mount + " 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << "needs root to mount a small tmpfs";
  std::ofstream(mount + "/out.gguf") << "the previous output";
  const CommandResult r = run_llmpress("quantize -m " + test::shared_path(model) + " -o " + mount + "/out.gguf --type Q8_0");
  const std::string previous = slurp(mount + "/out.gguf");
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(mount)) ++entries;
  std::system(("umount " + mount).c_str());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("disk full"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(mount), std::string::npos) << r.err;  // names the file it could not write
  EXPECT_EQ(previous, "the previous output");
  EXPECT_EQ(entries, 1u);
}

TEST(Cli, InfoReportsStories260K) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const CommandResult r = run_llmpress("info -m " + test::shared_path("models/stories260K/stories260K.bin"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("260032"), std::string::npos) << r.out;  // README: 260,032 weights
  EXPECT_NE(r.out.find("model.layers.4.mlp.down_proj.weight"), std::string::npos);
}

TEST(Cli, PerplexityPrintsFinalLineAndJson) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const std::string model = test::shared_path("models/stories260K/stories260K.bin");
  const std::string text = test::shared_path("data/tinystories-eval.txt");
  CommandResult r = run_llmpress("perplexity -m " + model + " -f " + text + " -c 128 --chunks 4");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("ppl = "), std::string::npos) << r.out;
  r = run_llmpress("perplexity -m " + model + " -f " + text + " -c 128 --chunks 4 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"perplexity\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"chunks\": 4"), std::string::npos) << r.out;
}

TEST(Cli, GenerateStreamsText) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const CommandResult r = run_llmpress("generate -m " + test::shared_path("models/stories260K/stories260K.bin") +
                                       " -p 'Once upon a time' -n 20 --temp 0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Once upon a time", 0), 0u) << r.out;
  EXPECT_GT(r.out.size(), std::string("Once upon a time").size() + 20);
}

TEST(Cli, BadOptionValueIsRejected) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const CommandResult r = run_llmpress("perplexity -m " + test::shared_path("models/stories260K/stories260K.bin") +
                                       " -f /nonexistent.txt");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/nonexistent.txt"), std::string::npos) << r.err;
}

// Converting to each output format gives a model that loads and scores like the original
// (F16/Q8_0 within rounding), with its tokenizer carried along.
TEST(Cli, ConvertToEveryFormatKeepsThePerplexity) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  test::TempDir dir;
  const std::string model = test::shared_path("models/stories260K/stories260K.bin");
  const std::string text = test::shared_path("data/tinystories-eval.txt");
  auto ppl_of = [&](const std::string& m) {
    const CommandResult r = run_llmpress("perplexity -m " + m + " -f " + text + " -c 128 --chunks 8 --no-progress");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return std::stod(r.out.substr(r.out.find("ppl = ") + 6));
  };
  const double reference = ppl_of(model);
  const std::vector<std::pair<std::string, double>> outputs = {
      {"model.gguf --type F32", 1e-4}, {"q8.gguf --type Q8_0", 0.01}, {"hf --type F16", 0.002}, {"copy.bin", 1e-4}};
  for (const auto& [args, tolerance] : outputs) {
    const CommandResult r = run_llmpress("convert -m " + model + " -o " + dir.file(args));
    ASSERT_EQ(r.exit_code, 0) << args << ": " << r.err;
    const std::string out = dir.file(args.substr(0, args.find(' ')));
    EXPECT_NEAR(ppl_of(out) / reference, 1.0, tolerance) << args;
  }
  // The llama2.c tokenizer written beside copy.bin is byte-identical to the model's own tok512.bin.
  EXPECT_EQ(slurp(dir.file("tokenizer.bin")), slurp(test::shared_path("models/stories260K/tok512.bin")));
}

// A llama-quantize mix chooses per-tensor types (Q4_K_M: Q6_K for some attn_v / ffn_down, Q4_K
// elsewhere, norms F32) and keeps the perplexity close to the dense model's.
TEST(Cli, ConvertWithLlamaQuantizeMix) {
  LLMPRESS_REQUIRE_SHARED("models/gutenberg-dev-llama-5m/model.safetensors");
  test::TempDir dir;
  const std::string model = test::shared_path("models/gutenberg-dev-llama-5m");
  CommandResult r = run_llmpress("convert -m " + model + " -o " + dir.file("q4km.gguf") + " --type Q4_K_M");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_llmpress("info -m " + dir.file("q4km.gguf") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* type : {"\"Q4_K\"", "\"Q6_K\"", "\"F32\""}) EXPECT_NE(r.out.find(type), std::string::npos) << type;
  auto ppl_of = [&](const std::string& m) {
    const CommandResult p = run_llmpress("perplexity -m " + m + " -f " + test::shared_path("data/gutenberg-dev-eval.txt") +
                                         " -c 256 --chunks 8 --no-progress");
    EXPECT_EQ(p.exit_code, 0) << p.err;
    return std::stod(p.out.substr(p.out.find("ppl = ") + 6));
  };
  EXPECT_NEAR(ppl_of(dir.file("q4km.gguf")) / ppl_of(model), 1.0, 0.02);
  r = run_llmpress("convert -m " + model + " -o " + dir.file("bad.gguf") + " --type Q4_K --tensor-type attn_v=Q8_0");
  EXPECT_EQ(r.exit_code, 1);
}

}  // namespace
}  // namespace llmpress

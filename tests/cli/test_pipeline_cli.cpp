// The compression commands as a new user types them: the format follows the output name, no
// calibration text is needed for the defaults, conflicts fail before any work, every command is
// a recipe (--save-recipe, llmpress run), bad recipes name their line, and a job killed in its
// second stage resumes there with the same output.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "cli/cli_test_util.h"
#include "llmpress/io/gguf.h"
#include "llmpress/io/mapped_file.h"

namespace llmpress {
namespace {

namespace fs = std::filesystem;
using test::run_llmpress;

const char* kGutenberg = "models/gutenberg-dev-llama-5m";
const char* kStories = "models/stories260K/stories260K.bin";

// name -> (ggml type, bytes) of every tensor of a GGUF file.
std::map<std::string, std::pair<uint32_t, std::string>> gguf_tensors(const std::string& path) {
  const GgufFile f = read_gguf(path);
  std::map<std::string, std::pair<uint32_t, std::string>> out;
  for (const GgufTensorInfo& t : f.tensors)
    out[t.name] = {t.ggml_type, std::string(reinterpret_cast<const char*>(f.file->data() + f.data_start + t.offset),
                                            t.nbytes)};
  return out;
}

const GgufValue* gguf_key(const GgufFile& f, const std::string& key) { return f.find(key); }

TEST(CliPipeline, QuantizeToAGgufNameWithAMixWritesGgufWithoutCalibration) {
  LLMPRESS_REQUIRE_SHARED(kGutenberg);
  const std::string model = test::shared_path(kGutenberg);
  test::TempDir dir;
  const auto q = run_llmpress("quantize -m " + model + " -o " + dir.file("out.gguf") + " --type Q4_K_M --no-progress");
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_NE(q.out.find("GGUF Q4_K_M"), std::string::npos) << q.out;
  // Round to nearest without calibration: the tensors llama-quantize's quantizers give (convert
  // writes exactly those, checked against ggml elsewhere).
  const auto c = run_llmpress("convert -m " + model + " -o " + dir.file("convert.gguf") + " --type Q4_K_M");
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(gguf_tensors(dir.file("out.gguf")), gguf_tensors(dir.file("convert.gguf")));
  // The file says how it was made.
  const GgufFile f = read_gguf(dir.file("out.gguf"));
  ASSERT_NE(gguf_key(f, "llmpress.recipe"), nullptr);
  EXPECT_NE(gguf_key(f, "llmpress.recipe")->string_value.find("method: rtn"), std::string::npos);
  ASSERT_NE(gguf_key(f, "llmpress.version"), nullptr);
}

TEST(CliPipeline, ConflictingOptionsFailBeforeAnyWork) {
  LLMPRESS_REQUIRE_SHARED(kGutenberg);
  const std::string model = test::shared_path(kGutenberg);
  test::TempDir dir;
  for (const std::string& args :
       {"quantize -m " + model + " -o " + dir.file("x") + " --type Q4_K_M --format gptq",
        "quantize -m " + model + " -o " + dir.file("x.gguf") + " --bits 3",
        "quantize -m " + model + " -o " + dir.file("x.gguf") + " --format gptq",
        "prune -m " + model + " -o " + dir.file("x") + " --method sparsegpt",
        "prune -m " + model + " -o " + dir.file("x") + " --method magnitude --bits 4",
        "lowrank -m " + model + " -o " + dir.file("x") + " --method svd"}) {
    const auto r = run_llmpress(args + " --no-progress");
    EXPECT_EQ(r.exit_code, 1) << args << "\n" << r.err;
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << args << "\n" << r.err;
    EXPECT_FALSE(fs::exists(dir.file("x")) || fs::exists(dir.file("x.gguf"))) << args;
  }
}

TEST(CliPipeline, LowrankAndPruneFollowTheOutputName) {
  LLMPRESS_REQUIRE_SHARED(kGutenberg);
  const std::string model = test::shared_path(kGutenberg);
  test::TempDir dir;
  auto r = run_llmpress("lowrank -m " + model + " -o " + dir.file("svd.gguf") + " --method svd --ratio 0.8 --no-progress");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NO_THROW(read_gguf(dir.file("svd.gguf")));
  EXPECT_NE(r.out.find("factorized linears multiplied back"), std::string::npos) << r.out;
  r = run_llmpress("prune -m " + model + " -o " + dir.file("p.gguf") + " --sparsity 0.5 --type Q8_0 --no-progress");
  ASSERT_EQ(r.exit_code, 0) << r.err;  // magnitude: the default without calibration text
  EXPECT_NE(r.out.find("all decoder linear layers: 50.00% zero"), std::string::npos) << r.out;
  EXPECT_NO_THROW(read_gguf(dir.file("p.gguf")));
}

TEST(CliPipeline, SavedRecipeRerunsToTheSameBytes) {
  LLMPRESS_REQUIRE_SHARED(kGutenberg);
  const std::string model = test::shared_path(kGutenberg);
  const std::string calib = test::shared_path("data/gutenberg-dev-calib.txt");
  test::TempDir dir;
  const std::string out = dir.file("g.gguf");
  auto r = run_llmpress("quantize -m " + model + " -o " + out + " --type Q3_K_M --calib " + calib +
                        " --nsamples 4 --seqlen 64 --save-recipe " + dir.file("r.yaml") + " --no-progress");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  fs::rename(out, dir.file("first.gguf"));
  r = run_llmpress("run " + dir.file("r.yaml") + " --no-progress");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::slurp(out), test::slurp(dir.file("first.gguf")));
  EXPECT_NE(test::slurp(dir.file("r.yaml")).find("method: gptq"), std::string::npos);
}

TEST(CliPipeline, BadRecipesNameTheirLineAndWriteNothing) {
  LLMPRESS_REQUIRE_SHARED(kGutenberg);
  test::TempDir dir;
  const std::string recipe = dir.file("bad.yaml");
  std::ofstream(recipe) << "model: " << test::shared_path(kGutenberg) << "\noutput: " << dir.file("o.gguf")
                        << "\nstages:\n  - method: rtn\n    bits: 3\n  - method: wanda\n";
  const auto r = run_llmpress("run " + recipe + " --no-progress");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("error: " + recipe + ":6: "), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("o.gguf")));
}

// A two-stage job killed (kill -9 at the crash test point) after 2 layers of its second stage,
// then resumed: stage 1 is not redone and the output equals an uninterrupted run's.
TEST(CliPipeline, KilledInStageTwoResumesThereWithTheSameOutput) {
  LLMPRESS_REQUIRE_SHARED(kStories);
  LLMPRESS_REQUIRE_SHARED("data/tinystories-calib.txt");
  test::TempDir dir;
  const std::string recipe = dir.file("r.yaml");
  std::ofstream(recipe) << "model: " << test::shared_path(kStories) << "\ncalibration: {file: "
                        << test::shared_path("data/tinystories-calib.txt") << ", nsamples: 8, seqlen: 64}\n"
                        << "stages:\n  - method: sparsegpt\n    pattern: '2:4'\n  - method: gptq\n    bits: 4\n"
                        << "    group: 32\noutput: " << dir.file("out") << "\n";
  auto whole = run_llmpress("run " + recipe + " -o " + dir.file("whole") + " --no-progress");
  ASSERT_EQ(whole.exit_code, 0) << whole.err;

  const std::string work = " --work-dir " + dir.file("work") + " --no-progress";
  ::setenv("LLMPRESS_TEST_KILL_AFTER_LAYERS", "7", 1);  // stories260K has 5 layers: 2 into stage 2
  const auto killed = run_llmpress("run " + recipe + work);
  ::unsetenv("LLMPRESS_TEST_KILL_AFTER_LAYERS");
  ASSERT_EQ(killed.exit_code, 137) << killed.err;
  EXPECT_FALSE(fs::exists(dir.file("out")));
  const auto resumed = run_llmpress("run " + recipe + work + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming after 5 finished layers"), std::string::npos) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming after 2 finished layers"), std::string::npos) << resumed.err;
  EXPECT_EQ(test::slurp(dir.file("out/model.safetensors")), test::slurp(dir.file("whole/model.safetensors")));

  // Killed at other points of the 10 layers (5 per stage), and during the final write: never a partial
  // output, the same bytes after --resume, and no temporary left behind once the resumed job is done.
  for (const char* layers : {"1", "5", "9", "write"}) {
    fs::remove_all(dir.file("out"));
    fs::remove_all(dir.file("work"));
    const bool at_write = std::string(layers) == "write";
    if (at_write) ::setenv("LLMPRESS_TEST_KILL_COMMITTING", dir.file("out").c_str(), 1);
    else ::setenv("LLMPRESS_TEST_KILL_AFTER_LAYERS", layers, 1);
    const auto cut = run_llmpress("run " + recipe + work);
    ::unsetenv("LLMPRESS_TEST_KILL_AFTER_LAYERS");
    ::unsetenv("LLMPRESS_TEST_KILL_COMMITTING");
    ASSERT_EQ(cut.exit_code, 137) << layers << ": " << cut.err;
    EXPECT_FALSE(fs::exists(dir.file("out"))) << layers;
    const auto again = run_llmpress("run " + recipe + work + " --resume");
    ASSERT_EQ(again.exit_code, 0) << layers << ": " << again.err;
    EXPECT_EQ(test::slurp(dir.file("out/model.safetensors")), test::slurp(dir.file("whole/model.safetensors"))) << layers;
    for (const auto& entry : fs::directory_iterator(dir.path()))
      EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << layers << ": " << entry.path();
  }

  // The finished job leaves no calibration activations in its work folder (they are its bulk); a
  // --resume of the finished job recomputes them, to the same bytes.
  for (const auto& entry : fs::recursive_directory_iterator(dir.file("work")))
    EXPECT_NE(entry.path().filename().string().rfind("inputs-", 0), 0u) << entry.path();
  const auto finished = run_llmpress("run " + recipe + work + " --resume");
  ASSERT_EQ(finished.exit_code, 0) << finished.err;
  EXPECT_NE(finished.err.find("redoing this stage"), std::string::npos) << finished.err;
  EXPECT_EQ(test::slurp(dir.file("out/model.safetensors")), test::slurp(dir.file("whole/model.safetensors")));
}

// quantize, prune and lowrank are one-stage recipes of the same pipeline; each, killed after two of its
// five layers, resumes to the bytes of an uninterrupted run and never leaves a partial output.
TEST(CliPipeline, EveryCompressionCommandResumesAfterAKill) {
  LLMPRESS_REQUIRE_SHARED(kStories);
  LLMPRESS_REQUIRE_SHARED("data/tinystories-calib.txt");
  test::TempDir dir;
  const std::string calib = " --calib " + test::shared_path("data/tinystories-calib.txt") + " --nsamples 8 --seqlen 64";
  for (const std::string command : {"quantize --method gptq --bits 4 --group 32", "prune --method sparsegpt --sparsity 0.5",
                                    "lowrank --method svd-llm --ratio 0.6"}) {
    const std::string base = command.substr(0, command.find(' ')) + " -m " + test::shared_path(kStories) + calib +
                             " --no-progress " + command.substr(command.find(' ') + 1);
    const auto whole = run_llmpress(base + " -o " + dir.file("whole"));
    ASSERT_EQ(whole.exit_code, 0) << command << ": " << whole.err;
    const std::string work = " --work-dir " + dir.file("work") + " -o " + dir.file("out");
    ::setenv("LLMPRESS_TEST_KILL_AFTER_LAYERS", "2", 1);
    const auto killed = run_llmpress(base + work);
    ::unsetenv("LLMPRESS_TEST_KILL_AFTER_LAYERS");
    ASSERT_EQ(killed.exit_code, 137) << command << ": " << killed.err;
    EXPECT_FALSE(fs::exists(dir.file("out"))) << command;
    const auto resumed = run_llmpress(base + work + " --resume");
    ASSERT_EQ(resumed.exit_code, 0) << command << ": " << resumed.err;
    EXPECT_NE(resumed.err.find("resuming after 2 finished layers"), std::string::npos) << command << ": " << resumed.err;
    EXPECT_EQ(test::slurp(dir.file("out/model.safetensors")), test::slurp(dir.file("whole/model.safetensors"))) << command;
    for (const char* d : {"whole", "out", "work"}) fs::remove_all(dir.file(d));
  }
}

}  // namespace
}  // namespace llmpress

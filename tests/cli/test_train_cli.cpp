// train and distill as a user runs them: outputs follow their name (llama.cpp runs the GGUF), a new model
// from a config, a student made of teacher layers, a resumed job, and errors before any work.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli_test_util.h"
#include "llamacpp_node.h"
#include "llmpress/io/gguf.h"
#include "pipeline/pipeline_test_util.h"

namespace llmpress {
namespace {

namespace fs = std::filesystem;
using test::run_llmpress;
constexpr const char* kModel = "models/gutenberg-dev-llama-5m";
constexpr const char* kTeacher = "models/gutenberg-dev-llama-5m-long";
const std::string kQuick = " --steps 3 -b 2 --seqlen 64 --lr 1e-3 --no-progress -t 2";

std::string train_text() { return test::shared_path("data/gutenberg-dev-calib.txt"); }

TEST(CliTrain, FineTunesToAGgufThatLlamaCppRuns) {
  LLMPRESS_REQUIRE_SHARED(kModel);
  test::TempDir dir;
  const auto r = run_llmpress("train -m " + test::shared_path(kModel) + " -f " + train_text() + " -o " +
                              dir.file("tuned.gguf") + " --type F16 --eval " + test::shared_path(test::kGutenbergEval) +
                              " --eval-chunks 4 --eval-ctx 64" + kQuick);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("trained 3 steps"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("eval perplexity after 3 steps"), std::string::npos) << r.out;
  EXPECT_NO_THROW(read_gguf(dir.file("tuned.gguf")));
  const double ours = test::eval_perplexity(dir.file("tuned.gguf"), 8, /*llamacpp=*/true);
  if (test::llamacpp_unavailable().empty()) {
    const auto theirs = test::llamacpp_perplexity(dir.file("tuned.gguf"), test::shared_path(test::kGutenbergEval), 256, 8);
    ASSERT_TRUE(theirs.has_value());
    EXPECT_NEAR(*theirs, ours, 0.01 * ours);
  }
}

TEST(CliTrain, NewModelFromAConfigAndResume) {
  LLMPRESS_REQUIRE_SHARED(kModel);
  test::TempDir dir;
  const std::string base = "train --init-config " + test::shared_path(kModel) + "/config.json -f " + train_text() +
                           " -o " + dir.file("new") + " --steps 4 -b 2 --seqlen 32 --lr 3e-3 --no-progress -t 2";
  auto r = run_llmpress(base);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(fs::exists(dir.file("new/config.json")));
  ASSERT_TRUE(fs::exists(dir.file("new/tokenizer.model")));
  const std::string first = test::slurp(dir.file("new/model.safetensors"));
  // Interrupted after step 2 (the test hook kills the process), then resumed: the same model.
  fs::remove_all(dir.file("new"));
  const std::string killed = "LLMPRESS_TEST_KILL_AFTER_STEPS=2 ";
  const int status = std::system((killed + LLMPRESS_BINARY + " " + base + " --save-every 1 >/dev/null 2>&1").c_str());
  EXPECT_NE(status, 0);
  EXPECT_FALSE(fs::exists(dir.file("new")));
  ASSERT_TRUE(fs::exists(dir.file("new.train-state")));
  r = run_llmpress(base + " --save-every 1");  // a fresh start refuses to overwrite the state
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--resume"), std::string::npos) << r.err;
  r = run_llmpress(base + " --save-every 1 --resume");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("resumed"), std::string::npos) << r.err;
  EXPECT_EQ(test::slurp(dir.file("new/model.safetensors")), first);
  EXPECT_FALSE(fs::exists(dir.file("new.train-state")));  // removed once the job is complete
}

TEST(CliTrain, ErrorsComeBeforeAnyWork) {
  LLMPRESS_REQUIRE_SHARED(kModel);
  test::TempDir dir;
  const std::string model = test::shared_path(kModel);
  for (const std::string& args :
       {"train -f " + train_text() + " -o " + dir.file("x"),
        "train -m " + model + " --init-config " + model + "/config.json -f " + train_text() + " -o " + dir.file("x"),
        "train -m " + model + " -f " + train_text() + " -o " + dir.file("x") + " --lr -1",
        "train -m " + model + " -f " + train_text() + " -o " + dir.file("x") + " --schedule step",
        "train -m " + model + " -f " + train_text() + " -o " + dir.file("x") + " --resume",
        "train -m " + model + " -f " + dir.file("missing.txt") + " -o " + dir.file("x"),
        "train -m " + model + " -f " + train_text() + " -o " + dir.file("x") + " --type Q4_K_M --trainable '('",
        "distill -m " + model + " --teacher " + model + " -f " + train_text() + " -o " + dir.file("x") + " --loss kl",
        "distill --teacher " + model + " -f " + train_text() + " -o " + dir.file("x")}) {
    const auto r = run_llmpress(args + " --no-progress --steps 1");
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_NE(r.err.find("error"), std::string::npos) << args << "\n" << r.err;
    EXPECT_FALSE(fs::exists(dir.file("x"))) << args;
  }
  // A usage error names the problem and the help to read, and exits 2.
  const auto r = run_llmpress("train -m " + model + " -f " + train_text() + " -o " + dir.file("x") + " --steps 1 --steps 2");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("llmpress train --help"), std::string::npos) << r.err;
}

TEST(CliDistill, StudentFromTeacherLayersWithACachedTeacher) {
  LLMPRESS_REQUIRE_SHARED(kTeacher);
  test::TempDir dir;
  const std::string args = "distill --teacher " + test::shared_path(kTeacher) + " --init-from-teacher 0,1,3,5 -f " +
                           train_text() + " -o " + dir.file("student") + " --loss jsd --ce-weight 0.5 --teacher-cache " +
                           dir.file("teacher.cache") + " --cache-topk 16" + kQuick;
  auto r = run_llmpress(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("building the teacher cache"), std::string::npos) << r.err;
  ASSERT_TRUE(fs::exists(dir.file("teacher.cache")));
  const auto config = nlohmann::json::parse(test::slurp(dir.file("student/config.json")));
  EXPECT_EQ(config["num_hidden_layers"], 4);
  const std::string first = test::slurp(dir.file("student/model.safetensors"));
  r = run_llmpress(args);  // the cache is read, not rebuilt, and gives the same student
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("building the teacher cache"), std::string::npos) << r.err;
  EXPECT_EQ(test::slurp(dir.file("student/model.safetensors")), first);
  // On-policy steps: the student's continuations scored by the teacher.
  r = run_llmpress("distill --teacher " + test::shared_path(kTeacher) + " -m " + test::shared_path(kModel) + " -f " +
                   train_text() + " -o " + dir.file("gkd.gguf") + " --loss rkl --on-policy 1" + kQuick);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NO_THROW(read_gguf(dir.file("gkd.gguf")));
}

// A new, narrower student from a config, taught through a hidden-state projection: killed and resumed,
// the projection's training state comes back with the model's (the same bytes as an uninterrupted run).
TEST(CliDistill, NewNarrowerStudentWithAHiddenProjectionResumes) {
  LLMPRESS_REQUIRE_SHARED(kTeacher);
  test::TempDir dir;
  auto config = nlohmann::json::parse(test::slurp(test::shared_path(kTeacher) + "/config.json"));
  config["hidden_size"] = 128;
  config["intermediate_size"] = 256;
  config["num_hidden_layers"] = 2;
  std::ofstream(dir.file("config.json")) << config.dump();
  const std::string base = "distill --teacher " + test::shared_path(kTeacher) + " --init-config " + dir.file("config.json") +
                           " -f " + train_text() + " -o " + dir.file("small") + " --hidden-weight 0.5 --save-every 1" + kQuick;
  auto r = run_llmpress(base);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("256 x 128 projection"), std::string::npos) << r.err;
  EXPECT_EQ(nlohmann::json::parse(test::slurp(dir.file("small/config.json")))["hidden_size"], 128);
  ASSERT_TRUE(fs::exists(dir.file("small/tokenizer.model")));  // the teacher's
  const std::string first = test::slurp(dir.file("small/model.safetensors"));
  fs::remove_all(dir.file("small"));
  const int status =
      std::system(("LLMPRESS_TEST_KILL_AFTER_STEPS=2 " + std::string(LLMPRESS_BINARY) + " " + base + " >/dev/null 2>&1").c_str());
  EXPECT_NE(status, 0);
  r = run_llmpress(base + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::slurp(dir.file("small/model.safetensors")), first);
}

// The tensors of a written Hugging Face folder, float32.
std::map<std::string, at::Tensor> model_tensors(const std::string& folder) {
  const Checkpoint checkpoint = open_checkpoint(folder);
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, raw] : checkpoint.tensors) out[name] = checkpoint.load(name);
  return out;
}

// prune -> distill as recipe stages (the teacher is the recipe's model): the same student as the
// distill command makes from the pruned model, trained embeddings and head written, and a job killed
// in the middle of the distill stage resumes there to the same output.
TEST(CliDistill, RecipeStageEqualsTheCommandAndResumesMidTraining) {
  LLMPRESS_REQUIRE_SHARED(kModel);
  test::TempDir dir;
  const std::string model = test::shared_path(kModel);
  const std::string head = "model: " + model + "\ncalibration: {file: " + train_text() +
                           ", nsamples: 8, seqlen: 64}\nstages:\n  - method: layers\n    count: 2\n";
  const std::string distill = "  - method: distill\n    data: " + train_text() +
                              "\n    loss: fkl\n    ce_weight: 0.5\n    steps: 4\n    batch_size: 2\n    seqlen: 32"
                              "\n    lr: 1e-3\n    save_every: 1\n";
  std::ofstream(dir.file("pruned.yaml")) << head << "output: {path: " << dir.file("pruned") << ", type: F32}\n";
  std::ofstream(dir.file("recovered.yaml")) << head << distill << "output: {path: " << dir.file("recovered") << ", type: F32}\n";
  auto r = run_llmpress("run " + dir.file("pruned.yaml") + " --no-progress -t 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_llmpress("run " + dir.file("recovered.yaml") + " --no-progress -t 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("trained 4 steps"), std::string::npos) << r.out;
  r = run_llmpress("distill -m " + dir.file("pruned") + " --teacher " + model + " -f " + train_text() + " -o " +
                   dir.file("command") + " --type F32 --loss fkl --ce-weight 0.5 --steps 4 -b 2 --seqlen 32 --lr 1e-3 "
                   "--no-progress -t 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto stage = model_tensors(dir.file("recovered")), command = model_tensors(dir.file("command"));
  const auto pruned = model_tensors(dir.file("pruned"));
  ASSERT_EQ(stage.size(), command.size());
  for (const auto& [name, t] : command) {
    ASSERT_TRUE(stage.count(name)) << name;
    EXPECT_TRUE(at::equal(stage.at(name), t)) << name;
  }
  EXPECT_FALSE(at::equal(stage.at("model.embed_tokens.weight"), pruned.at("model.embed_tokens.weight")));
  EXPECT_FALSE(at::equal(stage.at("model.norm.weight"), pruned.at("model.norm.weight")));

  // Killed after step 2 of the distill stage, then resumed from its checkpoint in the work folder.
  const std::string work = dir.file("work");
  const std::string killed = "LLMPRESS_TEST_KILL_AFTER_STEPS=2 ";
  const int status = std::system((killed + LLMPRESS_BINARY + " run " + dir.file("recovered.yaml") + " -o " +
                                  dir.file("resumed") + " --work-dir " + work + " --no-progress -t 2 >/dev/null 2>&1").c_str());
  EXPECT_NE(status, 0);
  EXPECT_FALSE(fs::exists(dir.file("resumed")));
  ASSERT_TRUE(fs::exists(work + "/stage-2-distill/train-state"));
  r = run_llmpress("run " + dir.file("recovered.yaml") + " -o " + dir.file("resumed") + " --work-dir " + work +
                   " --resume --no-progress -t 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("resumed from"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(work + "/stage-2-distill/train-state"));
  for (const auto& [name, t] : model_tensors(dir.file("resumed"))) EXPECT_TRUE(at::equal(stage.at(name), t)) << name;
}

TEST(CliDistill, RecipeStageErrorsNameTheirLine) {
  LLMPRESS_REQUIRE_SHARED(kModel);
  test::TempDir dir;
  const std::string head = "model: " + test::shared_path(kModel) + "\nstages:\n  - method: distill\n";
  struct Case {
    std::string stage, message, line;
  };
  const std::vector<Case> cases = {
      {"    steps: 3\n", "needs training data", "r.yaml:3:"},
      {"    data: /nonexistent.txt\n", "cannot read", "r.yaml:4:"},
      {"    data: " + train_text() + "\n    loss: xyz\n", "unknown distillation loss", "r.yaml:5:"},
      {"    data: " + train_text() + "\n    teacher: /nonexistent\n", "does not exist", "r.yaml:5:"},
      {"    data: " + train_text() + "\n    on_policy: 2\n", "--on-policy must be in [0, 1]", "r.yaml:3:"},
  };
  for (const auto& [stage, message, line] : cases) {
    std::ofstream(dir.file("r.yaml")) << head << stage << "output: " << dir.file("out") << "\n";
    const auto r = run_llmpress("run " + dir.file("r.yaml") + " --no-progress");
    EXPECT_NE(r.exit_code, 0) << stage;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(line), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir.file("out")));
  }
}

}  // namespace
}  // namespace llmpress

// gen-tasks -> eval and gen-data as a user runs them: the harness-shaped JSON, the sample log, gold
// records, and the errors a user meets.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <sstream>

#include "cli_test_util.h"
#include "test_util.h"

namespace llmpress {
namespace {

constexpr const char* kStories = "models/stories260K/stories260K-F32.gguf";

std::vector<nlohmann::json> lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::istringstream in(test::slurp(path));
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(EvalCli, HarnessShapedJsonAndSampleLog) {
  LLMPRESS_REQUIRE_SHARED(kStories);
  test::TempDir dir;
  const std::string tasks = dir.file("tasks.jsonl");
  ASSERT_EQ(test::run_llmpress("gen-tasks -n 3 --family addition,mapping -o " + tasks).exit_code, 0);
  ASSERT_EQ(lines(tasks).size(), 6u);
  std::ofstream(tasks, std::ios::app) << R"({"task": "choose", "prompt": "Lily saw a", "choices": ["dog", "spaceship"], "label": 0})" "\n"
                                      << R"({"task": "choose", "prompt": "Tom ate an", "choices": ["apple", "rock"], "label": 0})" "\n";
  const auto r = test::run_llmpress("eval -m " + test::shared_path(kStories) + " --tasks " + tasks +
                                    " -n 8 -b 4 --json --no-progress --log-samples " + dir.file("samples.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto out = nlohmann::json::parse(r.out);
  for (const char* task : {"addition", "mapping"}) {
    EXPECT_TRUE(out["results"][task].contains("exact_match,none")) << out.dump(1);
    EXPECT_TRUE(out["results"][task].contains("exact_match_stderr,none"));
    EXPECT_EQ(out["n-samples"][task]["effective"], 3);
    EXPECT_EQ(out["configs"][task]["output_type"], "generate_until");
  }
  EXPECT_EQ(out["n-shot"]["mapping"], 6);  // each mapping item's own demonstrations
  EXPECT_EQ(out["n-shot"]["addition"], 0);
  const auto& choose = out["results"]["choose"];
  for (const char* key : {"acc,none", "acc_stderr,none", "acc_norm,none", "acc_norm_stderr,none"}) EXPECT_TRUE(choose.contains(key)) << key;
  EXPECT_EQ(out["higher_is_better"]["choose"]["acc_norm"], true);
  EXPECT_EQ(out["config"]["batch_size"], 4);
  const auto samples = lines(dir.file("samples.jsonl"));
  ASSERT_EQ(samples.size(), 8u);
  const auto& mc = samples[6];
  EXPECT_EQ(mc["arguments"].size(), 2u);
  EXPECT_EQ(mc["arguments"][0][1], " dog");                   // target delimiter " "
  EXPECT_EQ(mc["filtered_resps"][0].size(), 2u);             // [log-likelihood, is greedy]
  EXPECT_LT(mc["filtered_resps"][0][0].get<double>(), 0.0);
  EXPECT_EQ(samples[0]["arguments"][0][1]["max_gen_toks"], 8);
  EXPECT_TRUE(samples[0]["resps"][0][0].is_string());
  EXPECT_NE(r.err.find("tokens/s"), std::string::npos);       // generation throughput
  // The table form.
  const auto table = test::run_llmpress("eval -m " + test::shared_path(kStories) + " --tasks " + tasks + " -n 4 --limit 1 --no-progress");
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("| choose | 1 | acc_norm |"), std::string::npos) << table.out;
}

TEST(EvalCli, GenDataGoldAndErrors) {
  test::TempDir dir;
  const std::string tasks = dir.file("tasks.jsonl");
  ASSERT_EQ(test::run_llmpress("gen-tasks -n 4 --family subtraction -o " + tasks).exit_code, 0);
  const auto gold = test::run_llmpress("gen-data --mode gold --rationales --tasks " + tasks + " --question-only -o " + dir.file("sft.jsonl"));
  ASSERT_EQ(gold.exit_code, 0) << gold.err;
  const auto records = lines(dir.file("sft.jsonl"));
  ASSERT_EQ(records.size(), 4u);
  EXPECT_NE(records[0]["response"].get<std::string>().find("borrow"), std::string::npos);
  EXPECT_EQ(records[0]["response"].get<std::string>().rfind("\nAnswer: "), records[0]["response"].get<std::string>().find("\nAnswer: "));

  const auto no_teacher = test::run_llmpress("gen-data --mode icl --tasks " + tasks + " -o " + dir.file("x.jsonl"));
  EXPECT_NE(no_teacher.exit_code, 0);
  EXPECT_NE(no_teacher.err.find("needs the teacher"), std::string::npos) << no_teacher.err;
  std::ofstream(dir.file("bad.jsonl")) << "{\"task\": \"t\"}\n";
  const auto bad = test::run_llmpress("eval -m " + test::shared_path(kStories) + " --tasks " + dir.file("bad.jsonl"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("bad.jsonl:1"), std::string::npos) << bad.err;
  const auto family = test::run_llmpress("gen-tasks --family division -o " + dir.file("y.jsonl"));
  EXPECT_NE(family.exit_code, 0);
  EXPECT_NE(family.err.find("families: addition"), std::string::npos) << family.err;
}

}  // namespace
}  // namespace llmpress

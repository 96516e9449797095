// Teacher-built data: the ROUGE-L filter against hand-computed values, gold records, and the icl, cot
// (self-consistency) and instruct builders on a real model: every question accounted for as kept or
// dropped by a reason, provenance on every record, filters that hold on what is kept.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "llmpress/core/error.h"
#include "llmpress/distill/teacher_data.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/model/transformer.h"
#include "llmpress/tokenizer/tokenizer.h"
#include "test_util.h"

namespace llmpress {
namespace {

constexpr const char* kStories = "models/stories260K/stories260K-F32.gguf";

TEST(TeacherData, RougeL) {
  EXPECT_DOUBLE_EQ(rouge_l("a b c d", "a b c d"), 1.0);
  EXPECT_DOUBLE_EQ(rouge_l("a b c d", "a c d e"), 0.75);          // LCS a c d: P = R = 3/4
  EXPECT_DOUBLE_EQ(rouge_l("a b", "a x y z w b"), 2 * (2.0 / 6) * 1.0 / (2.0 / 6 + 1.0));  // P = 2/6, R = 2/2
  EXPECT_DOUBLE_EQ(rouge_l("Reverse the letters: abc", "reverse THE letters abc!"), 1.0);  // case and punctuation
  EXPECT_DOUBLE_EQ(rouge_l("", "a"), 0.0);
  EXPECT_DOUBLE_EQ(rouge_l("a b", "c d"), 0.0);
}

std::vector<TaskItem> questions(bool gold) {
  std::vector<TaskItem> items;
  for (const char* prompt : {"Once upon a time", "Lily saw a", "The dog was", "Tom liked to"}) {
    TaskItem item;
    item.task = "story";
    item.prompt = prompt;
    item.answer = gold ? "cat" : "";
    item.rationale = "because";
    item.source = std::string("q:") + prompt;
    items.push_back(item);
  }
  return items;
}

int64_t total(const TeacherData& data) {
  int64_t n = 0;
  for (const auto& [reason, count] : data.counts) n += count;
  return n;
}

TEST(TeacherData, GoldRecordsNeedNoTeacher) {
  auto items = questions(true);
  TeacherDataOptions o;
  o.mode = "gold";
  o.shots = 1;
  o.trigger = "Think.";
  const TeacherData data = build_teacher_data(nullptr, nullptr, items, o);
  ASSERT_EQ(data.records.size(), items.size());
  const auto& r = data.records[0];
  EXPECT_EQ(r["response"], "because\nAnswer: cat");  // a trigger asks for the rationale
  const std::string prompt = r["prompt"];
  EXPECT_NE(prompt.find("\n\nOnce upon a time"), std::string::npos);  // one demonstration before the question
  EXPECT_EQ(prompt.substr(prompt.size() - 7), "Think.\n");
  o.question_only = true;
  o.trigger.clear();
  EXPECT_EQ(build_teacher_data(nullptr, nullptr, items, o).records[0]["prompt"], "Once upon a time");
  o.mode = "icl";
  EXPECT_THROW(build_teacher_data(nullptr, nullptr, items, o), Error);
}

TEST(TeacherData, StepByStepPairsAnAnswerRecordWithWeightedRationales) {
  auto items = questions(true);
  TeacherDataOptions o;
  o.mode = "gold";
  o.question_only = true;
  o.trigger = "Think.";
  o.step_by_step = 0.5;
  const TeacherData data = build_teacher_data(nullptr, nullptr, items, o);
  ASSERT_EQ(data.records.size(), 2 * items.size());
  const auto& answer = data.records[0];
  const auto& rationale = data.records[1];
  EXPECT_EQ(answer["prompt"], "Once upon a time");  // the answer task: no trigger
  EXPECT_EQ(answer["response"], "Answer: cat");
  EXPECT_EQ(answer["weight"], 1.0);
  EXPECT_EQ(answer["provenance"]["template"], "step-by-step answer");
  EXPECT_EQ(rationale["prompt"], "Once upon a timeThink.\n");  // the trigger names the rationale task
  EXPECT_EQ(rationale["response"], "because\nAnswer: cat");
  EXPECT_EQ(rationale["weight"], 0.5);
  o.trigger.clear();  // the two tasks would share one prompt
  EXPECT_THROW(build_teacher_data(nullptr, nullptr, items, o), Error);
  o.trigger = "Think.";
  o.mode = "icl";
  EXPECT_THROW(build_teacher_data(nullptr, nullptr, items, o), Error);
  o.mode = "gold";
  o.step_by_step = -1;
  EXPECT_THROW(build_teacher_data(nullptr, nullptr, items, o), Error);
}

class TeacherDataOnModel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(test::shared_path(kStories))) GTEST_SKIP() << "needs " << test::shared_path(kStories);
    checkpoint = open_checkpoint(test::shared_path(kStories));
    tokenizer = load_tokenizer(checkpoint);
    model = Transformer::load(checkpoint);
    options.generation.progress = false;
    options.generation.until = {"\n\n"};
    options.generation.sampling.max_new_tokens = 16;
    options.generation.sampling.temperature = 0;
    options.teacher_path = test::shared_path(kStories);
    options.teacher_sha256 = model_sha256(options.teacher_path);
  }
  Checkpoint checkpoint;
  std::unique_ptr<Tokenizer> tokenizer;
  Transformer model;
  TeacherDataOptions options;
};

TEST_F(TeacherDataOnModel, IclRecordsCarryTheirProvenance) {
  const auto items = questions(true);
  options.mode = "icl";
  options.shots = 2;
  options.keep_wrong = true;  // the story model knows no answers: keep what it says
  const TeacherData data = build_teacher_data(&model, tokenizer.get(), items, options);
  EXPECT_EQ(total(data), int64_t(items.size()));
  for (const auto& r : data.records) {
    EXPECT_EQ(r["provenance"]["demos"].size(), 2u);
    EXPECT_EQ(r["provenance"]["teacher_sha256"], options.teacher_sha256);
    EXPECT_EQ(r["provenance"]["teacher_sha256"].get<std::string>().size(), 64u);
    EXPECT_EQ(r["provenance"]["sampling"]["max_new_tokens"], 16);
    EXPECT_EQ(r["gold"], "cat");
    EXPECT_NE(r["prompt"].get<std::string>().find("\n\n"), std::string::npos);  // the k-shot prompt
    EXPECT_EQ(r["answer"], extract_answer(r["response"]));
  }
  options.keep_wrong = false;
  const TeacherData strict = build_teacher_data(&model, tokenizer.get(), items, options);
  EXPECT_EQ(strict.counts.count("kept") ? strict.counts.at("kept") : 0, 0);  // no "cat" from this model
  EXPECT_EQ(total(strict), int64_t(items.size()));
}

TEST_F(TeacherDataOnModel, CotKeepsTheMajorityAnswerWithoutGold) {
  const auto items = questions(false);
  options.mode = "cot";
  options.shots = 0;
  options.trigger = "Then";
  options.samples = 6;
  options.generation.sampling.temperature = 1.0;
  options.generation.until = {"."};  // short samples, so answers repeat
  options.generation.sampling.max_new_tokens = 4;
  const TeacherData data = build_teacher_data(&model, tokenizer.get(), items, options);
  EXPECT_EQ(total(data), int64_t(items.size()) * options.samples);
  std::map<std::string, std::string> answer_of;
  for (const auto& r : data.records) {
    const std::string question = r["prompt"];
    const auto [it, fresh] = answer_of.emplace(question, r["answer"]);
    EXPECT_EQ(it->second, r["answer"]) << "one answer per question: the majority";
    EXPECT_EQ(r["samples"], 6);
    EXPECT_GE(r["votes"].get<int>(), 1);
    EXPECT_EQ(r["response"], r["rationale"].get<std::string>() + "\nAnswer: " + r["answer"].get<std::string>());
  }
}

TEST_F(TeacherDataOnModel, SelfInstructKeepsOnlyWhatPassesTheFilters) {
  auto items = questions(true);
  options.mode = "instruct";
  options.instructions = 6;
  options.shots = 1;
  options.min_words = 2;
  options.max_words = 5;  // story sentences run longer: some are dropped
  options.rouge_threshold = 0.7;
  options.generation.sampling.temperature = 1.0;
  options.generation.batch_size = 8;
  const TeacherData data = build_teacher_data(&model, tokenizer.get(), items, options);
  ASSERT_FALSE(data.records.empty());
  std::vector<std::string> kept;
  for (const auto& r : data.records) {
    const std::string instruction = r["instruction"];
    for (const TaskItem& seed : items) EXPECT_LE(rouge_l(seed.prompt, instruction), 0.7) << instruction;
    for (const std::string& other : kept) EXPECT_LE(rouge_l(other, instruction), 0.7) << instruction;
    kept.push_back(instruction);
    EXPECT_EQ(r["provenance"]["mode"], "instruct");
  }
  EXPECT_LE(int64_t(kept.size()), options.instructions);
  EXPECT_GT(total(data), int64_t(kept.size()));  // some proposals were dropped, each counted
}

TEST(TeacherData, FolderHashCoversEveryFile) {
  test::TempDir dir;
  std::ofstream(dir.file("a.json")) << "{}";
  std::ofstream(dir.file("b.bin")) << "weights";
  const std::string before = model_sha256(dir.path());
  std::ofstream(dir.file("b.bin")) << "weightz";
  EXPECT_NE(model_sha256(dir.path()), before);
  EXPECT_EQ(model_sha256(dir.file("a.json")), "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
}

}  // namespace
}  // namespace llmpress

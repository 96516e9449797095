// The task-file format and its documented rules (docs/tasks.md): parsing and its errors, the response
// and answer-extraction rules, k-shot prompts and the seeded demonstration draw.
#include <gtest/gtest.h>

#include <fstream>

#include "llmpress/core/error.h"
#include "llmpress/eval/tasks.h"
#include "test_util.h"

namespace llmpress {
namespace {

std::string write(const test::TempDir& dir, const std::string& text) {
  std::ofstream(dir.file("tasks.jsonl")) << text;
  return dir.file("tasks.jsonl");
}

std::string error_of(const std::string& path) {
  try {
    read_task_file(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TaskFile, ReadsGenerativeAndMultipleChoiceItems) {
  test::TempDir dir;
  const auto items = read_task_file(write(dir,
      R"({"task": "add", "prompt": "Add: 1 + 2\n", "answer": "3", "rationale": "1 + 2 = 3.", "demos": [{"prompt": "Add: 1 + 1\n", "answer": "2"}]})"
      "\n\n"
      R"({"task": "pick", "prompt": "The sky is", "choices": ["blue", "green"], "label": 0})" "\n"));
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].task, "add");
  EXPECT_EQ(items[0].answer, "3");
  EXPECT_EQ(items[0].rationale, "1 + 2 = 3.");
  ASSERT_EQ(items[0].demos.size(), 1u);
  EXPECT_EQ(items[0].demos[0].answer, "2");
  EXPECT_FALSE(items[0].multiple_choice());
  EXPECT_TRUE(items[1].multiple_choice());
  EXPECT_EQ(items[1].as_demo().answer, "blue");
  EXPECT_NE(items[1].source.find(":3"), std::string::npos);  // the blank line still counts
}

TEST(TaskFile, MalformedItemsNameTheFileAndLine) {
  test::TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"task\": \"t\", \"prompt\": \"p\"", "not a JSON object"},
      {"[1, 2]", "must be a JSON object"},
      {R"({"prompt": "p", "answer": "a"})", "no \"task\""},
      {R"({"task": "t", "answer": "a"})", "no \"prompt\""},
      {R"({"task": "t", "prompt": "p"})", "either \"answer\""},
      {R"({"task": "t", "prompt": "p", "answer": "a", "choices": ["x", "y"], "label": 0})", "either \"answer\""},
      {R"({"task": "t", "prompt": 5, "answer": "a"})", "\"prompt\" must be a string"},
      {R"({"task": "t", "prompt": "p", "choices": ["x"], "label": 0})", "at least two"},
      {R"({"task": "t", "prompt": "p", "choices": ["x", 3], "label": 0})", "every choice must be a string"},
      {R"({"task": "t", "prompt": "p", "choices": ["x", "y"], "label": 2})", "not an index"},
      {R"({"task": "t", "prompt": "p", "choices": ["x", "y"]})", "integer \"label\""},
      {R"({"task": "t", "prompt": "p", "answer": "a", "demos": {"prompt": "q"}})", "\"demos\" must be a list"},
      {R"({"task": "t", "prompt": "p", "answer": "a", "demos": [{"prompt": "q"}]})", "no \"answer\""},
      {"", "no task items"},
  };
  for (const auto& [text, expected] : cases) {
    const std::string message = error_of(write(dir, text + "\n"));
    EXPECT_NE(message.find(expected), std::string::npos) << text << " -> " << message;
    if (!text.empty()) EXPECT_NE(message.find("tasks.jsonl:1"), std::string::npos) << message;
  }
}

TEST(TaskFile, ResponseTextFollowsThePrompt) {
  // A prompt that ends with the marker (the harness's style) gets " ANSWER"; any other gets the marker.
  EXPECT_EQ(response_text("Question: 2 + 2?\nAnswer:", "4", "2 + 2 = 4.", true), " 4");
  EXPECT_EQ(response_text("Add: 2 + 2\n", "4", "", true), "Answer: 4");
  EXPECT_EQ(response_text("Add: 2 + 2\n", "4", "2 + 2 = 4.", false), "Answer: 4");
  EXPECT_EQ(response_text("Add: 2 + 2\n", "4", "2 + 2 = 4.", true), "2 + 2 = 4.\nAnswer: 4");
}

TEST(TaskFile, AnswerExtractionRule) {
  EXPECT_EQ(extract_answer(" 46\nAdd: 1 + 1"), "46");                    // no marker: the first line
  EXPECT_EQ(extract_answer("6 + 0 = 6. Answer: 6 is it. Answer:  46.\n"), "46");  // the last marker wins
  EXPECT_EQ(extract_answer("Answer:   lii \n\nmore"), "lii");
  EXPECT_EQ(extract_answer("Answer: pENcIL"), "pENcIL");                  // case is kept
  EXPECT_EQ(extract_answer("Answer:\n"), "");
  EXPECT_EQ(normalize_answer("  a \t b\n c. "), "a b c");
  EXPECT_EQ(normalize_answer("3.."), "3.");  // one trailing period only
}

std::vector<TaskItem> pool() {
  std::vector<TaskItem> items;
  for (int i = 0; i < 6; ++i) {
    TaskItem item;
    item.task = i < 5 ? "add" : "other";
    item.prompt = "Add: " + std::to_string(i) + " + 1\n";
    item.answer = std::to_string(i + 1);
    item.rationale = "r" + std::to_string(i);
    item.source = "f:" + std::to_string(i + 1);
    items.push_back(item);
  }
  items[0].demos = {{"Add: 9 + 9\n", "18", "9 + 9 = 18."}};
  return items;
}

TEST(TaskFile, DemonstrationsOwnFirstThenSeededFromTheSameTask) {
  const auto items = pool();
  EXPECT_EQ(choose_demos(items, 0, -1, 1).size(), 1u);  // -1: the item's own only
  EXPECT_TRUE(choose_demos(items, 1, -1, 1).empty());
  const auto demos = choose_demos(items, 0, 3, 7);
  ASSERT_EQ(demos.size(), 3u);
  EXPECT_EQ(demos[0].prompt, "Add: 9 + 9\n");
  for (size_t d = 1; d < demos.size(); ++d) {
    EXPECT_NE(demos[d].prompt, items[0].prompt);          // never the item itself
    EXPECT_NE(demos[d].prompt, items[5].prompt);          // never another task
  }
  const auto again = choose_demos(items, 0, 3, 7);
  for (size_t d = 0; d < demos.size(); ++d) EXPECT_EQ(again[d].prompt, demos[d].prompt);  // seeded
  bool differs = false;
  for (uint64_t seed = 1; seed < 20 && !differs; ++seed) differs = choose_demos(items, 1, 2, seed)[0].prompt != choose_demos(items, 1, 2, 0)[0].prompt;
  EXPECT_TRUE(differs);
  EXPECT_THROW(choose_demos(items, 1, 5, 1), Error);  // only four others of its task
}

TEST(TaskFile, FewshotPromptJoinsDemonstrationsAsTheHarnessDoes) {
  const auto items = pool();
  const std::vector<Demo> demos = {{"Add: 9 + 9\n", "18", "9 + 9 = 18."}, {"Q: 1 + 1?\nAnswer:", "2", ""}};
  EXPECT_EQ(fewshot_prompt(items[1], demos, false), "Add: 9 + 9\nAnswer: 18\n\nQ: 1 + 1?\nAnswer: 2\n\nAdd: 1 + 1\n");
  EXPECT_EQ(fewshot_prompt(items[1], demos, true), "Add: 9 + 9\n9 + 9 = 18.\nAnswer: 18\n\nQ: 1 + 1?\nAnswer: 2\n\nAdd: 1 + 1\n");
  EXPECT_EQ(fewshot_prompt(items[1], {}, true), items[1].prompt);
}

}  // namespace
}  // namespace llmpress

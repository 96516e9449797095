#pragma once
// Task files (docs/tasks.md): one JSON object per line, either generative
//   {"task": NAME, "prompt": TEXT, "answer": TEXT}
// or multiple choice
//   {"task": NAME, "prompt": TEXT, "choices": [TEXT, ...], "label": INDEX}
// with optional "rationale" (the worked reasoning that leads to the answer) and "demos" (this item's
// own demonstrations: [{"prompt", "answer", "rationale"?}, ...], e.g. the pairs that define a mapping).
#include <cstdint>
#include <string>
#include <vector>

namespace llmpress {

// The marker after which a response states its final answer.
inline constexpr const char* kAnswerMarker = "Answer:";
// Between demonstrations and before the question (lm-evaluation-harness's fewshot_delimiter).
inline constexpr const char* kDemoDelimiter = "\n\n";

struct Demo {
  std::string prompt, answer, rationale;
};

struct TaskItem {
  std::string task;
  std::string prompt;
  std::string answer;                // generative
  std::vector<std::string> choices;  // multiple choice
  int64_t label = -1;
  std::string rationale;
  std::vector<Demo> demos;
  std::string source;                // "FILE:LINE", for messages

  bool multiple_choice() const { return !choices.empty(); }
  Demo as_demo() const;  // a multiple-choice item's answer is its labelled choice
};

// Every item of the file; throws naming the file and line for malformed JSON, missing or mistyped
// fields, a label outside the choices, or an empty file.
std::vector<TaskItem> read_task_file(const std::string& path);

// What a model should write after `prompt`: " ANSWER" when the prompt already ends with the answer
// marker (lm-evaluation-harness style, target delimiter " "), otherwise "Answer: ANSWER", preceded by
// "RATIONALE\n" when `with_rationale` and there is one.
std::string response_text(const std::string& prompt, const std::string& answer, const std::string& rationale,
                          bool with_rationale);

// The final answer in a generated response: the text after the last answer marker (all of it when
// there is none), up to the end of that line, normalised.
std::string extract_answer(const std::string& generation);
// Whitespace runs become one space, leading and trailing whitespace and one trailing '.' go. Case is
// kept (swap-case tasks depend on it).
std::string normalize_answer(const std::string& text);

// The k-shot prompt: demonstrations (each prompt + response, rationales with `with_rationale`) joined
// by kDemoDelimiter, then the item's prompt.
std::string fewshot_prompt(const TaskItem& item, const std::vector<Demo>& demos, bool with_rationale);

// The demonstrations for `items[index]`: with shots < 0 the item's own demos; otherwise `shots` of
// them, the item's own first, then others drawn (seeded, without the item itself) from the items of
// the same task.
std::vector<Demo> choose_demos(const std::vector<TaskItem>& items, size_t index, int64_t shots, uint64_t seed);

}  // namespace llmpress

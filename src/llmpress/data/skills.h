#pragma once
// Seeded task families with checkable answers that small models can learn (the skills benchmark,
// docs/tasks.md#skills). Every item is in the task-file format of eval/tasks.h; prompts end with a
// newline and the response is "Answer: X", or "RATIONALE\nAnswer: X" with the worked steps.
//   addition, subtraction  multi-digit, a digit-by-digit rationale with carries and borrows
//   reverse, sort, count, swapcase  string transforms named by an instruction, a letter-by-letter rationale
//   mapping                each item defines a fresh letter mapping by its own demonstrations, so only
//                          in-context learning solves it
#include <cstdint>
#include <string>
#include <vector>

#include "llmpress/eval/tasks.h"

namespace llmpress {

struct SkillOptions {
  int64_t digits = 3;        // arithmetic operands below 10^digits
  int64_t min_letters = 3;   // string and mapping words
  int64_t max_letters = 6;
  int64_t mapping_demos = 6;  // demonstrations that define each mapping
  uint64_t seed = 1;
};

const std::vector<std::string>& skill_families();

// `count` items of `family`; the same (family, count, options) give the same items on every platform.
std::vector<TaskItem> make_skill_items(const std::string& family, int64_t count, const SkillOptions& options);

// One JSON line of the task-file format.
std::string task_item_json(const TaskItem& item);

}  // namespace llmpress

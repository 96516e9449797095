// Task files (JSON lines: generative and multiple-choice items, rationales, demonstrations), with the
// prompts eval builds from them.
#include "fuzz_input.h"
#include "llmpress/eval/tasks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_input("tasks.jsonl", data, size);
  fuzz::expect_clean([&] {
    const std::vector<llmpress::TaskItem> items = llmpress::read_task_file(path);
    for (size_t i = 0; i < items.size() && i < 64; ++i) {
      (void)llmpress::fewshot_prompt(items[i], llmpress::choose_demos(items, i, 3, 1), true);
      (void)llmpress::extract_answer(items[i].prompt);
    }
  });
  return 0;
}

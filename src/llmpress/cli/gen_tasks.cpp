// llmpress gen-tasks: seeded skill task files (arithmetic, string transforms, mapping induction).
#include <filesystem>
#include <set>

#include "llmpress/cli/common.h"
#include "llmpress/core/error.h"
#include "llmpress/data/skills.h"
#include "llmpress/io/atomic_file.h"

namespace llmpress::cli {

namespace {

struct GenTasksCommand {
  std::vector<std::string> families;
  int64_t count = 100;
  SkillOptions options;
  std::vector<std::string> exclude;
  std::string output;
};

void run(const GenTasksCommand& command) {
  check_output_path(command.output, false);
  std::set<std::string> excluded;  // prompts of held-out files: never repeated here
  for (const std::string& path : command.exclude)
    for (const TaskItem& item : read_task_file(path)) excluded.insert(item.prompt);
  const std::vector<std::string> families = command.families.empty() ? skill_families() : command.families;
  std::string text;
  int64_t dropped = 0;
  for (const std::string& family : families) {
    for (const TaskItem& item : make_skill_items(family, command.count, command.options)) {
      if (excluded.count(item.prompt)) { ++dropped; continue; }
      text += task_item_json(item) + "\n";
    }
  }
  write_file_atomic(command.output, text);
  std::fprintf(stderr, "%s: %lld items per family (%zu families)%s\n", command.output.c_str(), (long long)command.count,
               families.size(), dropped ? (", " + std::to_string(dropped) + " dropped as in --exclude").c_str() : "");
}

}  // namespace

void register_gen_tasks(CLI::App& app) {
  auto command = std::make_shared<GenTasksCommand>();
  CLI::App* sub = app.add_subcommand("gen-tasks", "write a seeded skill task file (arithmetic, string transforms, mapping induction)");
  sub->add_option("--family", command->families, "task families (repeatable; default: all): addition, subtraction, "
                  "reverse, sort, count, swapcase, mapping")->delimiter(',');
  sub->add_option("-n,--count", command->count, "items per family")->capture_default_str();
  sub->add_option("--seed", command->options.seed, "seed of the draw")->capture_default_str();
  sub->add_option("--digits", command->options.digits, "arithmetic: digits per operand")->capture_default_str();
  sub->add_option("--min-letters", command->options.min_letters, "string tasks: shortest word")->capture_default_str();
  sub->add_option("--max-letters", command->options.max_letters, "string tasks: longest word")->capture_default_str();
  sub->add_option("--mapping-demos", command->options.mapping_demos, "mapping: demonstrations per item")->capture_default_str();
  sub->add_option("--exclude", command->exclude, "task files whose prompts must not appear (held-out sets; repeatable)");
  sub->add_option("-o,--output", command->output, "task file to write (.jsonl)")->required();
  sub->footer("examples:\n  llmpress gen-tasks -n 2000 --seed 1 -o train.jsonl\n"
              "  llmpress gen-tasks -n 200 --seed 2 --exclude train.jsonl -o heldout.jsonl");
  sub->callback([command] { run(*command); });
}

}  // namespace llmpress::cli

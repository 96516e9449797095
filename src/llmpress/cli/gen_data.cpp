// llmpress gen-data: the teacher builds a training set (in-context learning, chain of thought,
// self-instruct) from a task file.
#include <cstdio>

#include "llmpress/cli/common.h"
#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/distill/teacher_data.h"
#include "llmpress/io/atomic_file.h"
#include "llmpress/model/transformer.h"

namespace llmpress::cli {

namespace {

struct GenDataCommand {
  ModelOptions model;
  std::string tasks;
  TeacherDataOptions options;
  std::string output;
  bool no_progress = false;
};

void run(GenDataCommand& command) {
  TeacherDataOptions& options = command.options;
  check_output_path(command.output, false);
  const std::vector<TaskItem> items = read_task_file(command.tasks);
  if (options.mode == "cot" && options.samples > 1 && options.generation.sampling.temperature <= 0)
    throw Error("--samples " + std::to_string(options.samples) + " needs sampling: give --temp above 0 (e.g. 0.7)");
  TeacherData data;
  if (options.mode == "gold") {
    data = build_teacher_data(nullptr, nullptr, items, options);
  } else {
    if (command.model.model.empty()) throw Error("--mode " + options.mode + " needs the teacher: -m MODEL");
    const Checkpoint checkpoint = open_model(command.model);
    const auto tokenizer = load_tokenizer(checkpoint);
    const Transformer teacher = Transformer::load(checkpoint, parse_device(command.model.device));
    options.teacher_path = command.model.model;
    options.teacher_sha256 = model_sha256(command.model.model);
    options.generation.progress = !command.no_progress;
    data = build_teacher_data(&teacher, tokenizer.get(), items, options);
  }
  const std::string generated = data.generated_tokens == 0 ? "" : strprintf(" (%lld tokens generated in %.1fs, %.1f tokens/s)",
      (long long)data.generated_tokens, data.seconds, data.seconds > 0 ? double(data.generated_tokens) / data.seconds : 0.0);
  std::fprintf(stderr, "%s: %zu records%s\n", command.output.c_str(), data.records.size(), generated.c_str());
  for (const auto& [reason, count] : data.counts) std::fprintf(stderr, "  %-40s %lld\n", reason.c_str(), (long long)count);
  if (data.records.empty()) throw Error("the teacher's output passed no filter: nothing to write to " + command.output);
  std::string text;
  for (const auto& record : data.records) text += record.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  write_file_atomic(command.output, text);
}

}  // namespace

void register_gen_data(CLI::App& app) {
  auto command = std::make_shared<GenDataCommand>();
  TeacherDataOptions& o = command->options;
  o.generation.until = {"\n\n"};
  o.generation.sampling.temperature = 0;
  o.generation.sampling.top_p = 1;
  o.generation.sampling.max_new_tokens = 128;
  CLI::App* sub = app.add_subcommand("gen-data", "the teacher writes a training set: in-context-learning answers, "
                                                  "chain-of-thought rationales or self-instruct instructions");
  add_model_options(*sub, command->model);
  sub->add_option("--tasks", command->tasks, "questions (task file, docs/tasks.md); for instruct: the seed tasks")->required();
  sub->get_option("--model")->required(false)->description("the teacher (not needed for --mode gold)");
  sub->add_option("--mode", o.mode, "gold (the task file's answers, no teacher) | icl | cot | instruct")
      ->capture_default_str()->check(CLI::IsMember({"gold", "icl", "cot", "instruct"}));
  sub->add_flag("--rationales", o.rationales, "gold: responses carry the items' rationales");
  sub->add_option("--shots", o.shots, "demonstrations per teacher prompt (-1: each item's own demos)")->capture_default_str();
  sub->add_flag("--question-only", o.question_only, "records' prompts are the bare questions, not the teacher's k-shot prompts");
  sub->add_flag("--keep-wrong", o.keep_wrong, "icl: keep answers that differ from the gold answer");
  sub->add_option("--trigger", o.trigger, "gold, cot: append this (e.g. \"Let's think step by step.\") on its own line after the prompt");
  sub->add_option("--step-by-step", o.step_by_step,
                  "gold, cot: multi-task records, the bare answer (weight 1) and the rationale behind --trigger (weight W)");
  sub->add_option("--samples", o.samples, "cot: rationales sampled per question (self-consistency)")->capture_default_str();
  sub->add_option("--instructions", o.instructions, "instruct: new instructions to keep")->capture_default_str();
  sub->add_option("--seed-prompts", o.seed_prompts, "instruct: seed tasks shown per proposal")->capture_default_str();
  sub->add_option("--rouge-threshold", o.rouge_threshold, "instruct: drop a proposal whose ROUGE-L against a kept one is above this")
      ->capture_default_str();
  sub->add_option("--min-words", o.min_words, "instruct: shortest instruction")->capture_default_str();
  sub->add_option("--max-words", o.max_words, "instruct: longest instruction")->capture_default_str();
  sub->add_option("--ban", o.banned_words, "instruct: drop instructions with these words (repeatable)")->capture_default_str();
  sub->add_option("--temp", o.generation.sampling.temperature, "sampling temperature; 0 = greedy")->capture_default_str();
  sub->add_option("--top-p", o.generation.sampling.top_p, "nucleus sampling threshold")->capture_default_str();
  sub->add_option("--seed", o.seed, "seed of demonstration draws")->capture_default_str();
  sub->add_option("--sample-seed", o.generation.sampling.seed, "sampling seed (prompt i uses seed + i)")->capture_default_str();
  sub->add_option("-n,--max-new-tokens", o.generation.sampling.max_new_tokens, "most tokens per response")->capture_default_str();
  sub->add_option("--until", o.generation.until, "stop strings (repeatable; EOS always stops)")->capture_default_str();
  sub->add_option("-b,--batch-size", o.generation.batch_size, "prompts decoded together")->capture_default_str();
  sub->add_option("-o,--output", command->output, "training records to write (.jsonl)")->required();
  sub->add_flag("--no-progress", command->no_progress, "no progress line on stderr");
  sub->footer("examples:\n  llmpress gen-data -m teacher --tasks questions.jsonl --mode icl --shots 4 -o icl.jsonl\n"
              "  llmpress gen-data -m teacher --tasks questions.jsonl --mode cot --samples 4 --temp 0.7 -o cot.jsonl\n"
              "  llmpress gen-data -m teacher --tasks seeds.jsonl --mode instruct --instructions 500 --temp 1 -o sft.jsonl\n"
              "then: llmpress train -m student -f icl.jsonl -o student-icl");
  sub->callback([command] { run(*command); });
}

}  // namespace llmpress::cli

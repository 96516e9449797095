// llmpress eval: accuracy on task files (multiple choice and generative), lm-evaluation-harness style.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>

#include "llmpress/cli/common.h"
#include "llmpress/core/error.h"
#include "llmpress/core/version.h"
#include "llmpress/eval/task_eval.h"
#include "llmpress/io/atomic_file.h"
#include "llmpress/model/transformer.h"

namespace llmpress::cli {

namespace {

struct EvalCommand {
  ModelOptions model;
  std::string tasks;
  TaskEvalOptions options;
  int64_t limit = 0;
  bool json = false;
  std::string log_samples;
  bool no_progress = false;
};

// The harness writes "N/A" where a stderr is undefined (one item).
nlohmann::json stderr_value(double value) { return std::isnan(value) ? nlohmann::json("N/A") : nlohmann::json(value); }

std::vector<std::string> metrics(const TaskScore& score) {
  return score.generative ? std::vector<std::string>{"exact_match"} : std::vector<std::string>{"acc", "acc_norm"};
}

nlohmann::json generation_kwargs(const TaskEvalOptions& o) {
  return {{"until", o.until}, {"max_gen_toks", o.max_new_tokens}, {"do_sample", o.temperature > 0},
          {"temperature", o.temperature}, {"top_p", o.top_p}};
}

nlohmann::json harness_results(const EvalCommand& command, const std::vector<TaskItem>& items,
                               const TaskEvalReport& report, int64_t parameters) {
  nlohmann::json out;
  for (const TaskScore& score : report.tasks) {
    nlohmann::json task = {{"alias", score.task}, {"sample_len", score.n}};
    const auto put = [&](const std::string& metric, double value, double error) {
      task[metric + ",none"] = value;
      task[metric + "_stderr,none"] = stderr_value(error);
    };
    if (score.generative) {
      put("exact_match", score.acc, score.acc_stderr);
    } else {
      put("acc", score.acc, score.acc_stderr);
      put("acc_norm", score.acc_norm, score.acc_norm_stderr);
    }
    out["results"][score.task] = task;
    int64_t shots = command.options.shots;
    if (shots < 0)
      for (const TaskItem& item : items)
        if (item.task == score.task) { shots = int64_t(item.demos.size()); break; }
    out["n-shot"][score.task] = shots;
    out["n-samples"][score.task] = {{"original", score.n}, {"effective", score.n}};
    for (const std::string& metric : metrics(score)) out["higher_is_better"][score.task][metric] = true;
    out["versions"][score.task] = nullptr;
    nlohmann::json config = {{"task", score.task},
                             {"output_type", score.generative ? "generate_until" : "multiple_choice"},
                             {"num_fewshot", shots},
                             {"target_delimiter", " "},
                             {"fewshot_delimiter", kDemoDelimiter}};
    if (score.generative) config["generation_kwargs"] = generation_kwargs(command.options);
    out["configs"][score.task] = config;
  }
  out["config"] = {{"model", command.model.model},
                   {"model_num_parameters", parameters},
                   {"batch_size", command.options.batch_size},
                   {"device", command.model.device},
                   {"limit", command.limit > 0 ? nlohmann::json(command.limit) : nlohmann::json(nullptr)},
                   {"gen_kwargs", generation_kwargs(command.options)},
                   {"fewshot_seed", command.options.fewshot_seed},
                   {"random_seed", command.options.seed},
                   {"rationales_in_demos", command.options.with_rationale},
                   {"tasks_file", command.tasks}};
  out["date"] = double(std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count());
  out["llmpress_version"] = version();
  return out;
}

// One line per item, as the harness's samples_TASK.jsonl.
std::string sample_log(const std::vector<TaskItem>& items, const TaskEvalReport& report, const TaskEvalOptions& options) {
  std::string text;
  for (const SampleResult& sample : report.samples) {
    const TaskItem& item = items[sample.item];
    nlohmann::json line = {{"doc_id", sample.item}, {"task", item.task}, {"filter", "none"}};
    nlohmann::json doc = {{"prompt", item.prompt}};
    if (item.multiple_choice()) {
      doc["choices"] = item.choices, doc["label"] = item.label;
      line["target"] = item.label;
      nlohmann::json arguments = nlohmann::json::array(), resps = nlohmann::json::array();
      for (size_t c = 0; c < item.choices.size(); ++c) {
        arguments.push_back(nlohmann::json::array({sample.context, " " + item.choices[c]}));
        resps.push_back(nlohmann::json::array({sample.loglikelihoods[c], bool(sample.greedy[c])}));
      }
      line["arguments"] = arguments;
      nlohmann::json wrapped = nlohmann::json::array();
      for (const auto& r : resps) wrapped.push_back(nlohmann::json::array({r}));
      line["resps"] = wrapped;
      line["filtered_resps"] = resps;
      line["metrics"] = nlohmann::json::array({"acc", "acc_norm"});
      line["acc"] = sample.acc, line["acc_norm"] = sample.acc_norm;
    } else {
      doc["answer"] = item.answer;
      line["target"] = item.answer;
      line["arguments"] = nlohmann::json::array({nlohmann::json::array({sample.context, generation_kwargs(options)})});
      line["resps"] = nlohmann::json::array({nlohmann::json::array({sample.generation})});
      line["filtered_resps"] = nlohmann::json::array({sample.prediction});
      line["metrics"] = nlohmann::json::array({"exact_match"});
      line["exact_match"] = sample.acc;
    }
    if (!item.rationale.empty()) doc["rationale"] = item.rationale;
    line["doc"] = doc;
    text += line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  return text;
}

void print_table(const TaskEvalReport& report) {
  std::printf("| task | n | metric | value | stderr |\n|---|---:|---|---:|---:|\n");
  for (const TaskScore& score : report.tasks) {
    const auto row = [&](const char* metric, double value, double error) {
      const std::string e = std::isnan(error) ? "N/A" : std::to_string(error).substr(0, 6);
      std::printf("| %s | %lld | %s | %.4f | %s |\n", score.task.c_str(), (long long)score.n, metric, value, e.c_str());
    };
    if (score.generative) {
      row("exact_match", score.acc, score.acc_stderr);
    } else {
      row("acc", score.acc, score.acc_stderr);
      row("acc_norm", score.acc_norm, score.acc_norm_stderr);
    }
  }
}

void run(EvalCommand& command) {
  std::vector<TaskItem> items = read_task_file(command.tasks);
  if (command.limit > 0) {  // the first `limit` items of each task, as the harness's --limit
    std::vector<TaskItem> kept;
    std::map<std::string, int64_t> counts;
    for (TaskItem& item : items)
      if (++counts[item.task] <= command.limit) kept.push_back(std::move(item));
    items = std::move(kept);
  }
  if (!command.log_samples.empty()) check_output_path(command.log_samples, false);
  const Checkpoint checkpoint = open_model(command.model);
  const auto tokenizer = load_tokenizer(checkpoint);
  const Transformer model = Transformer::load(checkpoint, parse_device(command.model.device));
  command.options.progress = !command.no_progress;
  const TaskEvalReport report = evaluate_tasks(model, *tokenizer, items, command.options);
  if (!command.log_samples.empty()) write_file_atomic(command.log_samples, sample_log(items, report, command.options));
  if (command.json) {
    std::printf("%s\n", harness_results(command, items, report, model.parameter_count()).dump(2).c_str());
  } else {
    print_table(report);
  }
  if (report.generated_tokens > 0)
    std::fprintf(stderr, "generated %lld tokens in %.2fs (%.1f tokens/s, batches of %lld)\n",
                 (long long)report.generated_tokens, report.generation_seconds,
                 report.generation_seconds > 0 ? double(report.generated_tokens) / report.generation_seconds : 0.0,
                 (long long)command.options.batch_size);
}

}  // namespace

void register_eval(CLI::App& app) {
  auto command = std::make_shared<EvalCommand>();
  CLI::App* sub = app.add_subcommand("eval", "accuracy on task files: multiple choice (acc, acc_norm) and generative (exact match)");
  add_model_options(*sub, command->model);
  sub->add_option("--tasks", command->tasks, "task file, one JSON object per line (format: docs/tasks.md)")->required();
  sub->add_option("--shots", command->options.shots,
                  "demonstrations per prompt: each item's own \"demos\" first, then others of its task (seeded); "
                  "default: each item's own demos only");
  sub->add_flag("--cot", command->options.with_rationale, "demonstrations show their rationales (chain of thought)");
  sub->add_option("--fewshot-seed", command->options.fewshot_seed, "seed of the demonstration draw")->capture_default_str();
  sub->add_option("--limit", command->limit, "evaluate only the first N items of each task");
  sub->add_option("-b,--batch-size", command->options.batch_size, "sequences per forward pass (generation: prompts decoded together)")
      ->capture_default_str();
  sub->add_option("-n,--max-new-tokens", command->options.max_new_tokens, "generative items: most tokens per answer")
      ->capture_default_str();
  sub->add_option("--until", command->options.until, "generative items: stop strings (repeatable; EOS always stops)")
      ->capture_default_str();
  sub->add_option("--temp", command->options.temperature, "sampling temperature for generative items; 0 = greedy")->capture_default_str();
  sub->add_option("--top-p", command->options.top_p, "nucleus sampling threshold")->capture_default_str();
  sub->add_option("--seed", command->options.seed, "sampling seed")->capture_default_str();
  sub->add_flag("--json", command->json, "print lm-evaluation-harness-shaped results as JSON");
  sub->add_option("--log-samples", command->log_samples, "write every item's prompt, log-likelihoods or generation and score to this .jsonl");
  sub->add_flag("--no-progress", command->no_progress, "no progress line on stderr");
  sub->footer("examples:\n  llmpress eval -m MODEL --tasks skills.jsonl\n"
              "  llmpress eval -m MODEL --tasks arithmetic.jsonl --shots 4 --cot --json --log-samples samples.jsonl");
  sub->callback([command] { run(*command); });
}

}  // namespace llmpress::cli

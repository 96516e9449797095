#include "llmpress/eval/task_eval.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>

#include "llmpress/core/error.h"
#include "llmpress/core/progress.h"
#include "llmpress/eval/generate_text.h"
#include "llmpress/model/transformer.h"
#include "llmpress/tokenizer/tokenizer.h"

namespace llmpress {

namespace {

std::vector<int32_t> encode_with_bos(const Tokenizer& tokenizer, const std::string& text) {
  std::vector<int32_t> ids;
  if (tokenizer.add_bos()) ids.push_back(tokenizer.bos_id());
  for (int32_t id : tokenizer.encode(text)) ids.push_back(id);
  return ids;
}

// Python's len() of a UTF-8 string: code points, not bytes.
double characters(const std::string& text) {
  return double(std::count_if(text.begin(), text.end(), [](char c) { return (uint8_t(c) & 0xC0) != 0x80; }));
}

size_t argmax(const std::vector<double>& values) {
  return size_t(std::max_element(values.begin(), values.end()) - values.begin());
}

void score_multiple_choice(const Transformer& model, const Tokenizer& tokenizer, const std::vector<TaskItem>& items,
                           const std::vector<size_t>& chosen, std::vector<SampleResult>& samples,
                           const TaskEvalOptions& options) {
  std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> requests;
  for (size_t i : chosen)
    for (const std::string& choice : items[samples[i].item].choices)
      requests.push_back(encode_pair(tokenizer, samples[i].context, " " + choice));
  if (requests.empty()) return;
  Progress progress("multiple choice", int64_t(requests.size()), "requests", options.progress);
  std::vector<std::pair<double, bool>> results;
  for (size_t begin = 0; begin < requests.size(); begin += size_t(options.batch_size)) {
    const size_t end = std::min(requests.size(), begin + size_t(options.batch_size));
    const auto part = loglikelihoods(
        model, {requests.begin() + int64_t(begin), requests.begin() + int64_t(end)}, options.batch_size);
    results.insert(results.end(), part.begin(), part.end());
    progress.update(int64_t(end));
  }
  progress.finish();
  size_t next = 0;
  for (size_t i : chosen) {
    SampleResult& sample = samples[i];
    const TaskItem& item = items[sample.item];
    std::vector<double> normalized;
    for (const std::string& choice : item.choices) {
      sample.loglikelihoods.push_back(results[next].first);
      sample.greedy.push_back(results[next].second);
      normalized.push_back(results[next].first / characters(choice));
      ++next;
    }
    sample.acc = argmax(sample.loglikelihoods) == size_t(item.label) ? 1 : 0;
    sample.acc_norm = argmax(normalized) == size_t(item.label) ? 1 : 0;
  }
}

void score_generative(const Transformer& model, const Tokenizer& tokenizer, const std::vector<TaskItem>& items,
                      const std::vector<size_t>& chosen, std::vector<SampleResult>& samples,
                      const TaskEvalOptions& options, TaskEvalReport& report) {
  if (chosen.empty()) return;
  std::vector<std::string> prompts;
  for (size_t i : chosen) prompts.push_back(samples[i].context);
  TextGenerationOptions generation;
  generation.sampling.max_new_tokens = options.max_new_tokens;
  generation.sampling.temperature = options.temperature;
  generation.sampling.top_p = options.top_p;
  generation.sampling.seed = options.seed;
  generation.until = options.until;
  generation.batch_size = options.batch_size;
  generation.progress = options.progress;
  const GeneratedTexts texts = generate_texts(model, tokenizer, prompts, generation);
  for (size_t k = 0; k < chosen.size(); ++k) {
    SampleResult& sample = samples[chosen[k]];
    sample.generation = texts.texts[k];
    sample.prediction = extract_answer(sample.generation);
    sample.acc = sample.prediction == normalize_answer(items[sample.item].answer) ? 1 : 0;
  }
  report.generated_tokens = texts.tokens;
  report.generation_seconds = texts.seconds;
}

}  // namespace

std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_pair(const Tokenizer& tokenizer, std::string context,
                                                                  std::string continuation) {
  if (context.empty()) return {{tokenizer.bos_id()}, tokenizer.encode(continuation)};
  const size_t kept = context.find_last_not_of(" \t\r\n\v\f");
  const size_t spaces = kept == std::string::npos ? context.size() : context.size() - kept - 1;
  continuation = context.substr(context.size() - spaces) + continuation;
  context.resize(context.size() - spaces);
  const std::vector<int32_t> whole = encode_with_bos(tokenizer, context + continuation);
  const std::vector<int32_t> head = encode_with_bos(tokenizer, context);
  const size_t split = std::min(head.size(), whole.size());
  return {head, std::vector<int32_t>(whole.begin() + int64_t(split), whole.end())};
}

std::vector<std::pair<double, bool>> loglikelihoods(
    const Transformer& model, const std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>>& requests,
    int64_t batch_size) {
  at::NoGradGuard no_grad;
  const int64_t limit = model.config.context_length();
  std::vector<std::pair<double, bool>> results(requests.size(), {0.0, true});
  // Each sequence is context + continuation without its last token (the harness's inp), cut to the
  // last `limit` tokens; the continuation's tokens are predicted by the last positions.
  struct Row {
    size_t request;
    std::vector<int64_t> input;
    std::vector<int64_t> targets;
  };
  std::vector<Row> rows;
  for (size_t r = 0; r < requests.size(); ++r) {
    const auto& [context, continuation] = requests[r];
    if (continuation.empty()) continue;  // log 1 = 0, trivially greedy
    std::vector<int64_t> all(context.begin(), context.end());
    all.insert(all.end(), continuation.begin(), continuation.end());
    if (int64_t(all.size()) > limit + 1) all.erase(all.begin(), all.end() - (limit + 1));
    rows.push_back({r, std::vector<int64_t>(all.begin(), all.end() - 1),
                    std::vector<int64_t>(continuation.begin(), continuation.end())});
  }
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.input.size() > b.input.size(); });
  for (size_t begin = 0; begin < rows.size(); begin += size_t(std::max<int64_t>(1, batch_size))) {
    const size_t end = std::min(rows.size(), begin + size_t(std::max<int64_t>(1, batch_size)));
    const int64_t width = int64_t(rows[begin].input.size());
    // Right padding: causal attention keeps real positions from seeing it.
    at::Tensor tokens = at::zeros({int64_t(end - begin), width}, at::kLong);
    for (size_t b = begin; b < end; ++b)
      tokens[int64_t(b - begin)].narrow(0, 0, int64_t(rows[b].input.size())).copy_(at::tensor(at::IntArrayRef(rows[b].input), at::kLong));
    const at::Tensor logprobs = at::log_softmax(model.forward(tokens).to(at::kFloat), -1).cpu();
    for (size_t b = begin; b < end; ++b) {
      const Row& row = rows[b];
      const int64_t n = int64_t(row.targets.size()), last = int64_t(row.input.size());
      const at::Tensor scored = logprobs[int64_t(b - begin)].narrow(0, last - n, n);  // [n, vocab]
      const at::Tensor targets = at::tensor(at::IntArrayRef(row.targets), at::kLong);
      const double total = scored.gather(1, targets.unsqueeze(1)).to(at::kDouble).sum().item<double>();
      const bool greedy = scored.argmax(-1).equal(targets);
      results[row.request] = {total, greedy};
    }
  }
  return results;
}

std::pair<double, double> mean_and_stderr(const std::vector<double>& scores) {
  const double n = double(scores.size());
  if (scores.empty()) return {std::nan(""), std::nan("")};
  const double mean = std::accumulate(scores.begin(), scores.end(), 0.0) / n;
  if (scores.size() < 2) return {mean, std::nan("")};
  double squares = 0;
  for (double s : scores) squares += (s - mean) * (s - mean);
  return {mean, std::sqrt(squares / (n - 1)) / std::sqrt(n)};
}

TaskEvalReport evaluate_tasks(const Transformer& model, const Tokenizer& tokenizer, const std::vector<TaskItem>& items,
                              const TaskEvalOptions& options) {
  if (options.batch_size < 1) throw Error("the batch size must be at least 1");
  TaskEvalReport report;
  std::vector<std::string> names;
  std::vector<const TaskItem*> firsts;
  for (const TaskItem& item : items) {
    const size_t k = size_t(std::find(names.begin(), names.end(), item.task) - names.begin());
    if (k == names.size()) {
      names.push_back(item.task), firsts.push_back(&item);
    } else if (item.multiple_choice() != firsts[k]->multiple_choice()) {
      throw Error(item.source + ": task '" + item.task + "' mixes generative and multiple-choice items (see " +
                  firsts[k]->source + "); give them different task names");
    }
  }
  std::vector<size_t> choice_items, generative_items;
  for (size_t i = 0; i < items.size(); ++i) {
    SampleResult sample;
    sample.item = i;
    sample.context = fewshot_prompt(items[i], choose_demos(items, i, options.shots, options.fewshot_seed), options.with_rationale);
    (items[i].multiple_choice() ? choice_items : generative_items).push_back(i);
    report.samples.push_back(std::move(sample));
  }
  score_multiple_choice(model, tokenizer, items, choice_items, report.samples, options);
  score_generative(model, tokenizer, items, generative_items, report.samples, options, report);

  for (size_t k = 0; k < names.size(); ++k) {
    std::vector<double> acc, acc_norm;
    for (const SampleResult& sample : report.samples) {
      if (items[sample.item].task != names[k]) continue;
      acc.push_back(sample.acc);
      acc_norm.push_back(sample.acc_norm);
    }
    TaskScore score{names[k], !firsts[k]->multiple_choice(), int64_t(acc.size())};
    std::tie(score.acc, score.acc_stderr) = mean_and_stderr(acc);
    std::tie(score.acc_norm, score.acc_norm_stderr) = mean_and_stderr(acc_norm);
    report.tasks.push_back(score);
  }
  return report;
}

}  // namespace llmpress

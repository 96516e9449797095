#pragma once
// Task evaluation with lm-evaluation-harness's conventions (docs/tasks.md):
// - multiple choice: context = the k-shot prompt, continuation = " " + choice; the pair is tokenized
//   as the harness does (trailing spaces of the context move to the continuation; the continuation's
//   tokens are those of encode(context + continuation) after encode(context)); the tokenizer's own
//   BOS rule applies. acc = argmax of the summed log-likelihoods, acc_norm = argmax of the
//   log-likelihood per character of the choice.
// - generative: greedy (or sampled) generation from the k-shot prompt until EOS, a stop string or
//   max_new_tokens; the answer is extract_answer() of the text and must equal the normalised gold
//   answer exactly (exact_match).
// - stderr: the sample standard deviation (n - 1) over sqrt(n), the harness's mean_stderr.
#include <cstdint>
#include <string>
#include <vector>

#include "llmpress/eval/tasks.h"

namespace llmpress {

class Transformer;
class Tokenizer;

struct TaskEvalOptions {
  int64_t shots = -1;            // demonstrations per prompt; -1: each item's own "demos"
  uint64_t fewshot_seed = 1234;  // the harness's default fewshot seed
  bool with_rationale = false;   // demonstrations show their rationales (chain of thought)
  int64_t batch_size = 16;       // sequences per forward pass
  int64_t max_new_tokens = 128;
  std::vector<std::string> until = {kDemoDelimiter};  // stop strings (EOS always stops)
  double temperature = 0;        // 0: greedy
  double top_p = 1;
  uint64_t seed = 0;
  bool progress = true;
};

// One evaluated item, as --log-samples writes it.
struct SampleResult {
  size_t item = 0;
  std::string context;
  std::vector<double> loglikelihoods;  // multiple choice: per choice
  std::vector<bool> greedy;            // per choice: is the continuation the greedy one
  std::string generation, prediction;  // generative: the text and the extracted answer
  double acc = 0, acc_norm = 0;        // generative: acc is exact_match
};

struct TaskScore {
  std::string task;
  bool generative = false;
  int64_t n = 0;
  double acc = 0, acc_stderr = 0, acc_norm = 0, acc_norm_stderr = 0;  // stderr NaN for n < 2
};

struct TaskEvalReport {
  std::vector<TaskScore> tasks;  // in order of first appearance in the file
  std::vector<SampleResult> samples;
  int64_t generated_tokens = 0;
  double generation_seconds = 0;
};

TaskEvalReport evaluate_tasks(const Transformer& model, const Tokenizer& tokenizer, const std::vector<TaskItem>& items,
                              const TaskEvalOptions& options);

// The harness's (context, continuation) tokenization; an empty context becomes the BOS token.
std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_pair(const Tokenizer& tokenizer, std::string context,
                                                                  std::string continuation);

// Sum of log p(continuation | context) per request and whether every continuation token is the argmax,
// batch_size sequences per forward; sequences longer than the model's context keep their last tokens.
std::vector<std::pair<double, bool>> loglikelihoods(
    const Transformer& model, const std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>>& requests,
    int64_t batch_size);

// The harness's mean and mean_stderr of 0/1 scores.
std::pair<double, double> mean_and_stderr(const std::vector<double>& scores);

}  // namespace llmpress

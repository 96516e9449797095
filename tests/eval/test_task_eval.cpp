// Task evaluation on real models: the harness's (context, continuation) tokenization, log-likelihoods
// against an independent PyTorch forward, batched generation equal to one prompt at a time, and the
// scores of evaluate_tasks independent of the batch size.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "llmpress/core/error.h"
#include "llmpress/data/text.h"
#include "llmpress/eval/generate.h"
#include "llmpress/eval/generate_text.h"
#include "llmpress/eval/task_eval.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/model/transformer.h"
#include "llmpress/tokenizer/tokenizer.h"
#include "test_util.h"
#include "torch_reference.h"

namespace llmpress {
namespace {

constexpr const char* kModel = "models/gutenberg-dev-llama-5m";
constexpr const char* kStories = "models/stories260K/stories260K-F32.gguf";

std::vector<int32_t> with_bos(const Tokenizer& t, const std::string& text) {
  std::vector<int32_t> ids;
  if (t.add_bos()) ids.push_back(t.bos_id());
  for (int32_t id : t.encode(text)) ids.push_back(id);
  return ids;
}

TEST(TaskEval, EncodePairMovesTrailingSpacesAndSplitsTheWholeEncoding) {
  LLMPRESS_REQUIRE_SHARED(kModel);
  const auto tokenizer = load_tokenizer(open_checkpoint(test::shared_path(kModel)));
  const auto [context, continuation] = encode_pair(*tokenizer, "The whale swam ", "away");
  EXPECT_EQ(context, with_bos(*tokenizer, "The whale swam"));  // the trailing space went to the continuation
  std::vector<int32_t> joined = context;
  joined.insert(joined.end(), continuation.begin(), continuation.end());
  EXPECT_EQ(joined, with_bos(*tokenizer, "The whale swam away"));
  const auto [empty, all] = encode_pair(*tokenizer, "", "whale");
  EXPECT_EQ(empty, std::vector<int32_t>{tokenizer->bos_id()});
  EXPECT_EQ(all, tokenizer->encode("whale"));
}

TEST(TaskEval, MeanStderrIsTheHarnessFormula) {
  const auto [mean, stderr_] = mean_and_stderr({1, 0, 1, 1});
  EXPECT_DOUBLE_EQ(mean, 0.75);
  EXPECT_NEAR(stderr_, 0.25, 1e-12);  // sqrt(sum (x - 0.75)^2 / 3) / sqrt(4) = 0.5 / 2
  EXPECT_TRUE(std::isnan(mean_and_stderr({1}).second));
  EXPECT_DOUBLE_EQ(mean_and_stderr({0, 0, 0}).second, 0);
}

// PyTorch (tests/train/torch_train_reference.py, learning rate 0) scores each request's continuation:
// its per-step loss is the mean cross-entropy of exactly those tokens.
TEST(TaskEval, LoglikelihoodsMatchPyTorch) {
  LLMPRESS_REQUIRE_SHARED(kModel);
  const std::string why = test::torch_reference_unavailable();
  if (!why.empty()) GTEST_SKIP() << "PyTorch reference unavailable (" << why << "); scripts/setup.sh installs python3-torch";
  const Checkpoint ck = open_checkpoint(test::shared_path(kModel));
  const auto tokenizer = load_tokenizer(ck);
  const Transformer model = Transformer::load(ck);
  std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> requests = {
      encode_pair(*tokenizer, "Call me", " Ishmael."), encode_pair(*tokenizer, "It was the best of times, it was the", " worst of times"),
      encode_pair(*tokenizer, "The sea", " was calm and the sky was grey"), encode_pair(*tokenizer, "", "Whales")};
  const auto ours = loglikelihoods(model, requests, 3);
  const auto one_by_one = loglikelihoods(model, requests, 1);

  nlohmann::json in = {{"model_dir", test::shared_path(kModel)}, {"threads", 1}, {"clip", 0},
                       {"optimizer", {{"betas", {0.9, 0.95}}, {"eps", 1e-8}, {"weight_decay", 0.0}}}, {"no_decay", nlohmann::json::array()}};
  for (const auto& [context, continuation] : requests) {
    std::vector<int64_t> all(context.begin(), context.end()), labels;
    all.insert(all.end(), continuation.begin(), continuation.end());
    const std::vector<int64_t> inputs(all.begin(), all.end() - 1);
    for (size_t t = 0; t < inputs.size(); ++t) labels.push_back(t + 1 >= context.size() ? all[t + 1] : -100);
    in["steps"].push_back({{"lr", 0.0}, {"micro_batches", {{{"inputs", {inputs}}, {"labels", {labels}}}}}});
  }
  test::TempDir dir;
  std::ofstream(dir.file("in.json")) << in.dump();
  const std::string script = (std::filesystem::path(__FILE__).parent_path().parent_path() / "train" / "torch_train_reference.py").string();
  const std::string command = test::torch_python() + " " + script + " " + dir.file("in.json") + " " + dir.file("out.json") + " 2>" + dir.file("err.txt");
  ASSERT_EQ(std::system(command.c_str()), 0) << read_text_file(dir.file("err.txt"));
  const auto out = nlohmann::json::parse(read_text_file(dir.file("out.json")));
  for (size_t r = 0; r < requests.size(); ++r) {
    const double reference = -out["losses"][r].get<double>() * double(requests[r].second.size());
    EXPECT_NEAR(ours[r].first, reference, 1e-4 * std::abs(reference)) << "request " << r;
    EXPECT_NEAR(one_by_one[r].first, ours[r].first, 1e-4 * std::abs(reference)) << "request " << r;
    EXPECT_EQ(one_by_one[r].second, ours[r].second);
  }
}

TEST(TaskEval, BatchedGreedyGenerationEqualsOnePromptAtATime) {
  LLMPRESS_REQUIRE_SHARED(kStories);
  const Checkpoint ck = open_checkpoint(test::shared_path(kStories));
  const auto tokenizer = load_tokenizer(ck);
  const Transformer model = Transformer::load(ck);
  std::vector<std::vector<int32_t>> prompts;
  for (const char* text : {"Once upon a time", "Lily", "The little dog ran to the park and saw a big", "Tom and Sue"})
    prompts.push_back(with_bos(*tokenizer, text));
  GenerateOptions greedy;
  greedy.temperature = 0;
  greedy.max_new_tokens = 40;
  const auto batched = generate_batch(model, prompts, greedy);
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(batched[i], generate(model, prompts[i], greedy)) << "prompt " << i;
  // Sampling: prompt i draws with seed + i in any batch.
  GenerateOptions sampled = greedy;
  sampled.temperature = 0.8;
  sampled.seed = 5;
  const auto together = generate_batch(model, prompts, sampled);
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerateOptions alone = sampled;
    alone.seed = sampled.seed + i;
    EXPECT_EQ(together[i], generate(model, prompts[i], alone)) << "prompt " << i;
  }
}

std::vector<TaskItem> mixed_items() {
  std::vector<TaskItem> items;
  const std::vector<std::pair<std::string, std::string>> stories = {
      {"Once upon a time, there was a little", "girl"}, {"Lily wanted to play with her", "ball"},
      {"The sun was", "hot"}, {"Tom saw a big", "dog"}, {"One day, a bird", "flew"}};
  for (const auto& [prompt, answer] : stories) {
    TaskItem g;
    g.task = "continue";
    g.prompt = prompt;
    g.answer = answer;
    g.source = "test";
    items.push_back(g);
    TaskItem c;
    c.task = "choose";
    c.prompt = prompt;
    c.choices = {answer, "elephant-sized", "a"};
    c.label = 0;
    c.source = "test";
    items.push_back(c);
  }
  return items;
}

TEST(TaskEval, ScoresDoNotDependOnTheBatchSize) {
  LLMPRESS_REQUIRE_SHARED(kStories);
  const Checkpoint ck = open_checkpoint(test::shared_path(kStories));
  const auto tokenizer = load_tokenizer(ck);
  const Transformer model = Transformer::load(ck);
  const auto items = mixed_items();
  TaskEvalOptions options;
  options.progress = false;
  options.max_new_tokens = 12;
  options.until = {"."};
  options.shots = 2;
  options.batch_size = 1;
  const TaskEvalReport one = evaluate_tasks(model, *tokenizer, items, options);
  options.batch_size = 7;
  const TaskEvalReport seven = evaluate_tasks(model, *tokenizer, items, options);
  ASSERT_EQ(one.tasks.size(), 2u);
  EXPECT_EQ(one.tasks[0].task, "continue");
  EXPECT_TRUE(one.tasks[0].generative);
  EXPECT_FALSE(one.tasks[1].generative);
  for (size_t i = 0; i < items.size(); ++i) {
    EXPECT_EQ(one.samples[i].context, seven.samples[i].context);
    EXPECT_EQ(one.samples[i].generation, seven.samples[i].generation) << i;
    EXPECT_EQ(one.samples[i].acc, seven.samples[i].acc);
    for (size_t c = 0; c < one.samples[i].loglikelihoods.size(); ++c)
      EXPECT_NEAR(one.samples[i].loglikelihoods[c], seven.samples[i].loglikelihoods[c], 1e-3);
    if (items[i].multiple_choice()) {
      // acc_norm: log-likelihood per character of the choice (Python's len), acc: the sum.
      const auto& ll = one.samples[i].loglikelihoods;
      size_t best = 0, best_norm = 0;
      for (size_t c = 1; c < ll.size(); ++c) {
        if (ll[c] > ll[best]) best = c;
        if (ll[c] / double(items[i].choices[c].size()) > ll[best_norm] / double(items[i].choices[best_norm].size())) best_norm = c;
      }
      EXPECT_EQ(one.samples[i].acc, best == 0 ? 1 : 0);
      EXPECT_EQ(one.samples[i].acc_norm, best_norm == 0 ? 1 : 0);
      EXPECT_NE(one.samples[i].context.find("\n\n"), std::string::npos);  // two demonstrations before it
    } else {
      EXPECT_EQ(one.samples[i].generation.find('.'), std::string::npos);  // cut at the stop string
    }
  }
  // The per-task mean is the mean of the items'.
  double acc = 0;
  for (size_t i = 1; i < items.size(); i += 2) acc += one.samples[i].acc;
  EXPECT_DOUBLE_EQ(one.tasks[1].acc, acc / 5);
}

TEST(TaskEval, MixingKindsInOneTaskIsAnError) {
  LLMPRESS_REQUIRE_SHARED(kStories);
  const Checkpoint ck = open_checkpoint(test::shared_path(kStories));
  auto items = mixed_items();
  for (TaskItem& item : items) item.task = "same";
  TaskEvalOptions options;
  options.progress = false;
  EXPECT_THROW(evaluate_tasks(Transformer::load(ck), *load_tokenizer(ck), items, options), Error);
}

}  // namespace
}  // namespace llmpress

#include "llmpress/eval/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "llmpress/core/error.h"
#include "llmpress/model/transformer.h"

namespace llmpress {

namespace {

// xorshift64*: a tiny generator whose sequence is the same on every platform and library version.
double next_uniform(uint64_t& state) {
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return double((state * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace

int32_t sample_token(const std::vector<float>& logits, double temperature, double top_p, uint64_t& rng_state) {
  if (temperature <= 0) return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  std::vector<double> probs(logits.size());
  double total = 0;
  for (size_t i = 0; i < logits.size(); ++i) total += probs[i] = std::exp((logits[i] - max_logit) / temperature);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return probs[a] > probs[b]; });
  // Keep the most probable tokens until their mass reaches top_p, then sample among them.
  double kept = 0;
  size_t n = 0;
  while (n < order.size() && (n == 0 || kept < top_p * total)) kept += probs[order[n++]];
  double r = next_uniform(rng_state) * kept;
  for (size_t i = 0; i < n; ++i) {
    r -= probs[order[i]];
    if (r <= 0) return order[i];
  }
  return order[n - 1];
}

std::vector<std::vector<int32_t>> generate_batch(
    const Transformer& model, const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& options,
    const std::function<bool(size_t, const std::vector<int32_t>&)>& finished, const std::vector<uint64_t>& seeds) {
  const size_t rows = prompts.size();
  if (!seeds.empty() && seeds.size() != rows) throw Error("generate_batch: one seed per prompt");
  std::vector<std::vector<int32_t>> generated(rows);
  if (rows == 0) return generated;
  size_t longest = 0;
  for (const auto& prompt : prompts) {
    if (prompt.empty()) throw Error("generation needs at least one prompt token (e.g. BOS)");
    longest = std::max(longest, prompt.size());
  }
  at::NoGradGuard no_grad;
  std::vector<uint64_t> rng(rows);
  std::vector<int64_t> padding(rows);
  std::vector<int64_t> input(rows * longest, 0);  // padding slots hold token 0, never attended to
  for (size_t r = 0; r < rows; ++r) {
    rng[r] = (seeds.empty() ? options.seed + r : seeds[r]) * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
    if (rng[r] == 0) rng[r] = 1;
    padding[r] = int64_t(longest - prompts[r].size());
    std::copy(prompts[r].begin(), prompts[r].end(), input.begin() + int64_t(r * longest) + padding[r]);
  }
  KVCache cache = model.make_cache(padding, int64_t(longest) + options.max_new_tokens);
  at::Tensor tokens = at::tensor(at::IntArrayRef(input), at::kLong).view({int64_t(rows), int64_t(longest)});
  std::vector<bool> done(rows, false);
  size_t remaining = rows;
  for (int64_t step = 0; step < options.max_new_tokens && remaining > 0; ++step) {
    const at::Tensor logits = model.forward(tokens, &cache).select(1, -1).to(at::kFloat).cpu().contiguous();
    std::vector<int64_t> next(rows, 0);
    for (size_t r = 0; r < rows; ++r) {
      if (done[r]) continue;
      const float* row = logits.data_ptr<float>() + int64_t(r) * logits.size(1);
      const int32_t id = sample_token(std::vector<float>(row, row + logits.size(1)), options.temperature, options.top_p, rng[r]);
      next[r] = id;
      const bool stop = std::find(options.stop_ids.begin(), options.stop_ids.end(), id) != options.stop_ids.end();
      if (!stop) generated[r].push_back(id);
      if (stop || (finished && finished(r, generated[r]))) done[r] = true, --remaining;
    }
    tokens = at::tensor(at::IntArrayRef(next), at::kLong).view({int64_t(rows), 1});
  }
  return generated;
}

std::vector<int32_t> generate(const Transformer& model, const std::vector<int32_t>& prompt,
                              const GenerateOptions& options, const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) throw Error("generation needs at least one prompt token (e.g. BOS)");
  size_t streamed = 0;
  return generate_batch(model, {prompt}, options, [&](size_t, const std::vector<int32_t>& tokens) {
    for (; on_token && streamed < tokens.size(); ++streamed) on_token(tokens[streamed]);
    return false;
  })[0];
}

}  // namespace llmpress

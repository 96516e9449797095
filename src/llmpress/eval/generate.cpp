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

std::vector<int32_t> generate(const Transformer& model, const std::vector<int32_t>& prompt,
                              const GenerateOptions& options, const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) throw Error("generation needs at least one prompt token (e.g. BOS)");
  at::NoGradGuard no_grad;
  uint64_t rng_state = options.seed * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
  if (rng_state == 0) rng_state = 1;

  KVCache cache = model.make_cache(1, int64_t(prompt.size()) + options.max_new_tokens);
  std::vector<int64_t> prompt64(prompt.begin(), prompt.end());
  at::Tensor input = at::tensor(prompt64, at::kLong).unsqueeze(0);
  std::vector<int32_t> generated;
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    const at::Tensor logits = model.forward(input, &cache).select(1, -1).squeeze(0).to(at::kFloat).cpu().contiguous();
    const std::vector<float> row(logits.data_ptr<float>(), logits.data_ptr<float>() + logits.numel());
    const int32_t next = sample_token(row, options.temperature, options.top_p, rng_state);
    if (std::find(options.stop_ids.begin(), options.stop_ids.end(), next) != options.stop_ids.end()) break;
    generated.push_back(next);
    if (on_token) on_token(next);
    input = at::full({1, 1}, int64_t(next), at::kLong);
  }
  return generated;
}

}  // namespace llmpress

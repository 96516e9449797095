#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace llmpress {

class Transformer;

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  double temperature = 0.8;  // 0: greedy (argmax)
  double top_p = 0.95;       // nucleus sampling: smallest set of tokens with this much probability
  uint64_t seed = 0;
  std::vector<int32_t> stop_ids;  // generation ends after sampling one of these (not emitted)
};

// Runs the prompt through the model once, then decodes one token at a time with a KV cache.
// on_token is called for every new token as soon as it is chosen (streaming). Returns the new tokens.
std::vector<int32_t> generate(const Transformer& model, const std::vector<int32_t>& prompt,
                              const GenerateOptions& options, const std::function<void(int32_t)>& on_token = {});

// Several prompts at once, left-padded into one batch with one KV cache. Row i decodes exactly as
// generate() would with seeds[i] (default seed + i; greedy results equal up to float rounding of the
// batched matmuls). A row ends at a stop id, after max_new_tokens, or when `finished(row, tokens so
// far)` says so (a stop string). Returns the new tokens of each prompt.
std::vector<std::vector<int32_t>> generate_batch(
    const Transformer& model, const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& options,
    const std::function<bool(size_t, const std::vector<int32_t>&)>& finished = {},
    const std::vector<uint64_t>& seeds = {});

// Picks the next token from one row of logits [vocab] (greedy when temperature is 0).
int32_t sample_token(const std::vector<float>& logits, double temperature, double top_p, uint64_t& rng_state);

}  // namespace llmpress

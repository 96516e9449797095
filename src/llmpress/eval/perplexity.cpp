#include "llmpress/eval/perplexity.h"

#include <cmath>

#include "llmpress/core/error.h"
#include "llmpress/core/progress.h"
#include "llmpress/model/transformer.h"

namespace llmpress {

void check_perplexity_options(const ModelConfig& config, const PerplexityOptions& options) {
  const int64_t context = options.context;
  if (context < 2) throw Error("the context (-c) must be at least 2 tokens, got " + std::to_string(context));
  // Attention memory grows with the square of the window: a mistyped -c must not try to allocate it.
  // Windows beyond the trained context are allowed (llama.cpp allows them too), up to 4 times it.
  const int64_t trained = config.max_position_embeddings;
  if (trained > 0 && context > 4 * trained)
    throw Error("the context (-c " + std::to_string(context) + ") is more than 4 times the model's (" +
                std::to_string(trained) + ", max_position_embeddings); use -c " + std::to_string(trained) + " or less");
  if (options.max_chunks == 0 || options.max_chunks < -1)
    throw Error("--chunks must be a positive number of windows (or -1 for the whole text), got " +
                std::to_string(options.max_chunks));
}

PerplexityResult perplexity(const Transformer& model, const std::vector<int32_t>& text_tokens,
                            const PerplexityOptions& options) {
  check_perplexity_options(model.config, options);
  const int64_t context = options.context;

  std::vector<int64_t> stream;
  stream.reserve(text_tokens.size() + 1);
  if (options.llamacpp) stream.push_back(options.bos_id);
  stream.insert(stream.end(), text_tokens.begin(), text_tokens.end());

  int64_t chunks = int64_t(stream.size()) / context;
  if (options.max_chunks >= 0) chunks = std::min(chunks, options.max_chunks);
  if (chunks == 0)
    throw Error("the text has " + std::to_string(stream.size()) + " tokens, fewer than one window of " +
                std::to_string(context) + "; use a longer text or a smaller -c");

  // Position p's logits predict token p+1; scored positions are [first, context-1).
  const int64_t first = options.llamacpp ? context / 2 : 0;
  const int64_t per_batch = std::max<int64_t>(1, options.batch_tokens / context);

  double nll_sum = 0, nll_sq_sum = 0;
  int64_t count = 0;
  Progress progress("perplexity", chunks, "tokens", options.progress);
  at::NoGradGuard no_grad;
  for (int64_t chunk = 0; chunk < chunks; chunk += per_batch) {
    const int64_t batch = std::min(per_batch, chunks - chunk);
    at::Tensor windows = at::from_blob(stream.data() + chunk * context, {batch, context}, at::kLong).clone();
    if (options.llamacpp) windows.select(1, 0).fill_(options.bos_id);
    const at::Tensor logits = model.forward(windows).narrow(1, first, context - 1 - first);
    const at::Tensor targets = windows.narrow(1, first + 1, context - 1 - first).to(logits.device());
    const at::Tensor log_probs = at::log_softmax(logits.to(at::kFloat), -1);
    const at::Tensor nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1).to(at::kDouble).cpu();
    nll_sum += nll.sum().item<double>();
    nll_sq_sum += nll.pow(2).sum().item<double>();
    count += nll.numel();
    progress.update(chunk + batch, (chunk + batch) * context,
                    "ppl " + std::to_string(std::exp(nll_sum / double(count))));
  }
  progress.finish();

  PerplexityResult result;
  result.mean_nll = nll_sum / double(count);
  result.perplexity = std::exp(result.mean_nll);
  const double variance = nll_sq_sum / double(count) - result.mean_nll * result.mean_nll;
  if (variance > 0 && count > 1) result.uncertainty = result.perplexity * std::sqrt(variance / double(count - 1));
  result.chunks = chunks;
  result.scored_tokens = count;
  result.evaluated_tokens = chunks * context;
  result.seconds = progress.elapsed_seconds();
  result.tokens_per_second = result.seconds > 0 ? double(result.evaluated_tokens) / result.seconds : 0;
  return result;
}

}  // namespace llmpress

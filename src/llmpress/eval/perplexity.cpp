#include "llmpress/eval/perplexity.h"

#include <cmath>

#include "llmpress/core/error.h"
#include "llmpress/core/progress.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/model/layer_source.h"
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

namespace {

// The text cut into windows, as the convention has it, and the running sums of the scored tokens.
class WindowScorer {
 public:
  WindowScorer(const ModelConfig& config, const std::vector<int32_t>& text_tokens, const PerplexityOptions& options)
      : options_(options) {
    check_perplexity_options(config, options);
    const int64_t context = options.context;
    stream_.reserve(text_tokens.size() + 1);
    if (options.llamacpp) stream_.push_back(options.bos_id);
    stream_.insert(stream_.end(), text_tokens.begin(), text_tokens.end());
    chunks_ = int64_t(stream_.size()) / context;
    if (options.max_chunks >= 0) chunks_ = std::min(chunks_, options.max_chunks);
    if (chunks_ == 0)
      throw Error("the text has " + std::to_string(stream_.size()) + " tokens, fewer than one window of " +
                  std::to_string(context) + "; use a longer text or a smaller -c");
    // Position p's logits predict token p+1; scored positions are [first, context-1).
    first_ = options.llamacpp ? context / 2 : 0;
    per_batch_ = std::max<int64_t>(1, options.batch_tokens / context);
  }

  int64_t chunks() const { return chunks_; }
  int64_t per_batch() const { return per_batch_; }
  int64_t batch_size(int64_t chunk) const { return std::min(per_batch_, chunks_ - chunk); }

  // Token ids of windows [chunk, chunk + batch_size(chunk)).
  at::Tensor windows(int64_t chunk) const {
    at::Tensor w = at::from_blob(const_cast<int64_t*>(stream_.data()) + chunk * options_.context,
                                 {batch_size(chunk), options_.context}, at::kLong).clone();
    if (options_.llamacpp) w.select(1, 0).fill_(options_.bos_id);
    return w;
  }

  void score(const at::Tensor& windows, const at::Tensor& all_logits) {
    const int64_t context = options_.context;
    const at::Tensor logits = all_logits.narrow(1, first_, context - 1 - first_);
    const at::Tensor targets = windows.narrow(1, first_ + 1, context - 1 - first_).to(logits.device());
    const at::Tensor log_probs = at::log_softmax(logits.to(at::kFloat), -1);
    const at::Tensor nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1).to(at::kDouble).cpu();
    nll_sum_ += nll.sum().item<double>();
    nll_sq_sum_ += nll.pow(2).sum().item<double>();
    count_ += nll.numel();
  }

  std::string running() const { return "ppl " + std::to_string(std::exp(nll_sum_ / double(count_))); }

  PerplexityResult result(double seconds) const {
    PerplexityResult result;
    result.mean_nll = nll_sum_ / double(count_);
    result.perplexity = std::exp(result.mean_nll);
    const double variance = nll_sq_sum_ / double(count_) - result.mean_nll * result.mean_nll;
    if (variance > 0 && count_ > 1) result.uncertainty = result.perplexity * std::sqrt(variance / double(count_ - 1));
    result.chunks = chunks_;
    result.scored_tokens = count_;
    result.evaluated_tokens = chunks_ * options_.context;
    result.seconds = seconds;
    result.tokens_per_second = seconds > 0 ? double(result.evaluated_tokens) / seconds : 0;
    return result;
  }

 private:
  const PerplexityOptions& options_;
  std::vector<int64_t> stream_;
  int64_t chunks_ = 0, first_ = 0, per_batch_ = 1;
  double nll_sum_ = 0, nll_sq_sum_ = 0;
  int64_t count_ = 0;
};

}  // namespace

PerplexityResult perplexity(const Transformer& model, const std::vector<int32_t>& text_tokens,
                            const PerplexityOptions& options) {
  WindowScorer scorer(model.config, text_tokens, options);
  Progress progress("perplexity", scorer.chunks(), "tokens", options.progress);
  at::NoGradGuard no_grad;
  for (int64_t chunk = 0; chunk < scorer.chunks(); chunk += scorer.per_batch()) {
    const at::Tensor windows = scorer.windows(chunk);
    scorer.score(windows, model.forward(windows));
    const int64_t done = chunk + windows.size(0);
    progress.update(done, done * options.context, scorer.running());
  }
  progress.finish();
  return scorer.result(progress.elapsed_seconds());
}

PerplexityResult perplexity_streamed(const LayerSource& source, const std::vector<int32_t>& text_tokens,
                                     const PerplexityOptions& options, const at::Device& device) {
  const ModelConfig& config = source.config();
  WindowScorer scorer(config, text_tokens, options);
  const Transformer shell = source.load_shell(device);
  at::NoGradGuard no_grad;
  // The same batches as perplexity() runs, so the numbers are the same to the last bit.
  std::vector<at::Tensor> windows, hidden;
  for (int64_t chunk = 0; chunk < scorer.chunks(); chunk += scorer.per_batch()) {
    windows.push_back(scorer.windows(chunk));
    hidden.push_back(shell.embed(windows.back().to(device)));
  }
  Progress progress("perplexity (layer by layer)", config.num_layers + 1, "tokens", options.progress);
  const int64_t tokens = scorer.chunks() * options.context;
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const DecoderLayer layer = source.load_layer(i, device);
    for (at::Tensor& h : hidden) h = layer.forward(h, config, shell.rope, 0);
    progress.update(i + 1, (i + 1) * tokens, "layer " + std::to_string(i));
  }
  for (size_t b = 0; b < hidden.size(); ++b) {
    scorer.score(windows[b], shell.head(hidden[b]));
    hidden[b] = at::Tensor();
  }
  progress.update(config.num_layers + 1, (config.num_layers + 1) * tokens, scorer.running());
  progress.finish();
  return scorer.result(progress.elapsed_seconds());
}

uint64_t resident_model_bytes(const Checkpoint& checkpoint) {
  uint64_t bytes = 0;
  for (const auto& [name, tensor] : checkpoint.tensors) {
    const bool half = tensor.type == TensorType::F16 || tensor.type == TensorType::BF16;
    bytes += half ? 2 * tensor.nbytes : tensor.nbytes;
  }
  return bytes;
}

}  // namespace llmpress

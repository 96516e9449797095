#include "llmpress/eval/generate_text.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "llmpress/core/error.h"
#include "llmpress/core/progress.h"
#include "llmpress/model/transformer.h"
#include "llmpress/tokenizer/tokenizer.h"

namespace llmpress {

GeneratedTexts generate_texts(const Transformer& model, const Tokenizer& tokenizer, const std::vector<std::string>& prompts,
                              const TextGenerationOptions& options) {
  if (options.batch_size < 1) throw Error("the batch size must be at least 1");
  GeneratedTexts out;
  out.texts.resize(prompts.size());
  if (prompts.empty()) return out;
  const int64_t context = model.config.context_length();
  const int64_t keep = std::max<int64_t>(1, context - options.sampling.max_new_tokens);
  std::vector<std::vector<int32_t>> ids(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (tokenizer.add_bos()) ids[i].push_back(tokenizer.bos_id());
    for (int32_t id : tokenizer.encode(prompts[i])) ids[i].push_back(id);
    if (ids[i].empty()) ids[i].push_back(tokenizer.bos_id());
    if (int64_t(ids[i].size()) > keep) ids[i].erase(ids[i].begin(), ids[i].end() - keep);
  }
  // Longest first, so that a batch needs little padding and the ETA errs long.
  std::vector<size_t> order(prompts.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ids[a].size() > ids[b].size(); });
  const auto cut = [&](const std::string& text) {
    size_t at = text.size();
    for (const std::string& until : options.until)
      if (!until.empty()) at = std::min(at, text.find(until));
    return at;
  };
  GenerateOptions sampling = options.sampling;
  sampling.stop_ids.push_back(tokenizer.eos_id());
  Progress progress(options.label, int64_t(prompts.size()), "prompts", options.progress);
  const auto start = std::chrono::steady_clock::now();
  for (size_t begin = 0; begin < order.size(); begin += size_t(options.batch_size)) {
    const size_t end = std::min(order.size(), begin + size_t(options.batch_size));
    std::vector<std::vector<int32_t>> batch;
    std::vector<uint64_t> seeds;
    for (size_t k = begin; k < end; ++k) batch.push_back(ids[order[k]]), seeds.push_back(options.sampling.seed + order[k]);
    const auto generated = generate_batch(
        model, batch, sampling,
        [&](size_t, const std::vector<int32_t>& tokens) {
          const std::string text = tokenizer.decode(tokens);
          return cut(text) < text.size();
        },
        seeds);
    for (size_t k = begin; k < end; ++k) {
      const std::string text = tokenizer.decode(generated[k - begin]);
      out.texts[order[k]] = text.substr(0, cut(text));
      out.tokens += int64_t(generated[k - begin].size());
    }
    progress.update(int64_t(end));
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  progress.finish();
  return out;
}

}  // namespace llmpress

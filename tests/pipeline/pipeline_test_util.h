#pragma once
// Running small recipes on gutenberg-dev-llama-5m (256 / 768 wide: every block type fits) in tests.
#include <gtest/gtest.h>

#include "llmpress/data/text.h"
#include "llmpress/eval/perplexity.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/model/layer_source.h"
#include "llmpress/pipeline/pipeline.h"
#include "llmpress/tokenizer/tokenizer.h"
#include "test_util.h"

namespace llmpress::test {

inline const char* kGutenberg = "models/gutenberg-dev-llama-5m";
inline const char* kGutenbergCalib = "data/gutenberg-dev-calib.txt";
inline const char* kGutenbergEval = "data/gutenberg-dev-eval.txt";

#define LLMPRESS_REQUIRE_GUTENBERG()                      \
  do {                                                    \
    LLMPRESS_REQUIRE_SHARED(::llmpress::test::kGutenberg); \
    LLMPRESS_REQUIRE_SHARED(::llmpress::test::kGutenbergCalib); \
    LLMPRESS_REQUIRE_SHARED(::llmpress::test::kGutenbergEval);  \
  } while (0)

// A recipe on gutenberg with a little calibration data (8 x 128 tokens) and no stages yet.
inline Recipe gutenberg_recipe(const std::string& output) {
  Recipe r;
  r.model = shared_path(kGutenberg);
  r.calibration.file = shared_path(kGutenbergCalib);
  r.calibration.nsamples = 8;
  r.calibration.seqlen = 128;
  r.output.path = output;
  return r;
}

inline StageSpec stage(const std::string& method, nlohmann::json options = nlohmann::json::object()) {
  StageSpec s;
  s.method = method;
  s.options = std::move(options);
  return s;
}

inline PipelineReport run_quietly(const Recipe& recipe, RunOptions options = {}) {
  options.progress = false;
  return run_pipeline(recipe, options);
}

// Perplexity (GPTQ convention, or llama.cpp's) of a written model on the first windows of the eval text.
inline double eval_perplexity(const std::string& model_path, int64_t chunks, bool llamacpp = false) {
  const Checkpoint checkpoint = open_checkpoint(model_path);
  const Transformer model = CheckpointSource(checkpoint).load(at::kCPU);
  const auto tokenizer = load_tokenizer(checkpoint);
  const std::string text = read_text_file(shared_path(kGutenbergEval)).substr(0, 200000);
  PerplexityOptions options;
  options.context = 256;
  options.max_chunks = chunks;
  options.llamacpp = llamacpp;
  options.progress = false;
  options.bos_id = int32_t(checkpoint.config.bos_token_id);
  return perplexity(model, tokenizer->encode(text), options).perplexity;
}

}  // namespace llmpress::test

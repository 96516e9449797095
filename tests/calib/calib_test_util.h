#pragma once
// stories260K and a few calibration windows of tinystories-calib, shared by the calib and quant tests.
#include "llmpress/data/calibration.h"
#include "llmpress/data/text.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/tokenizer/tokenizer.h"
#include "test_util.h"

namespace llmpress::test {

inline const char* kStoriesModel = "models/stories260K/stories260K.bin";
inline const char* kStoriesCalib = "data/tinystories-calib.txt";

inline at::Tensor stories_calibration(const Checkpoint& checkpoint, int64_t nsamples, int64_t seqlen) {
  const auto tokenizer = load_tokenizer(checkpoint);
  // The first 40 kB of the text is plenty for a few windows and keeps tokenizing fast.
  const std::string text = read_text_file(shared_path(kStoriesCalib)).substr(0, 40000);
  CalibrationOptions options;
  options.nsamples = nsamples;
  options.seqlen = seqlen;
  options.seed = 0;
  return calibration_windows(tokenizer->encode(text), options, checkpoint.config.max_position_embeddings);
}

}  // namespace llmpress::test

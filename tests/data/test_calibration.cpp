// Calibration sampling: deterministic per seed, windows of the token stream, caps, jsonl input.
#include <gtest/gtest.h>

#include <fstream>

#include "llmpress/core/error.h"
#include "llmpress/data/calibration.h"
#include "test_util.h"

namespace llmpress {
namespace {

std::vector<int32_t> counting_tokens(int32_t n) {
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) tokens[size_t(i)] = i;
  return tokens;
}

TEST(Calibration, DeterministicPerSeedAndContiguousWindows) {
  const std::vector<int32_t> tokens = counting_tokens(1000);
  CalibrationOptions options;
  options.nsamples = 16;
  options.seqlen = 50;
  options.seed = 7;
  const at::Tensor a = calibration_windows(tokens, options), b = calibration_windows(tokens, options);
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{16, 50}));
  EXPECT_TRUE(at::equal(a, b));
  options.seed = 8;
  EXPECT_FALSE(at::equal(a, calibration_windows(tokens, options)));
  // Each window is a run of consecutive tokens of the stream (tokens are their own positions).
  for (int64_t s = 0; s < a.size(0); ++s) {
    const at::Tensor row = a[s];
    EXPECT_TRUE(at::equal(row, at::arange(row[0].item<int64_t>(), row[0].item<int64_t>() + 50, at::kLong)));
    EXPECT_LE(row[49].item<int64_t>(), 999);
  }
}

TEST(Calibration, SeqlenCappedByContextAndText) {
  CalibrationOptions options;
  options.nsamples = 3;
  options.seqlen = 512;
  EXPECT_EQ(calibration_windows(counting_tokens(1000), options, /*max_context=*/256).size(1), 256);
  EXPECT_EQ(calibration_windows(counting_tokens(100), options).size(1), 100);
  EXPECT_THROW(calibration_windows(counting_tokens(1), options), Error);
}

TEST(Calibration, JsonlTextFields) {
  test::TempDir dir;
  std::ofstream(dir.file("c.jsonl")) << "{\"text\": \"one\"}\n\n{\"text\": \"two\", \"id\": 3}\n";
  EXPECT_EQ(read_calibration_text(dir.file("c.jsonl")), "one\n\ntwo");
  std::ofstream(dir.file("bad.jsonl")) << "{\"text\": \"one\"}\n{\"body\": 1}\n";
  try {
    read_calibration_text(dir.file("bad.jsonl"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
  std::ofstream(dir.file("plain.txt")) << "{\"text\": \"kept as is\"}";
  EXPECT_EQ(read_calibration_text(dir.file("plain.txt")), "{\"text\": \"kept as is\"}");
}

}  // namespace
}  // namespace llmpress

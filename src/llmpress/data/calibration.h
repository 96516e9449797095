#pragma once
// Calibration samples for post-training compression: random windows of a tokenized text, drawn
// as the GPTQ paper's datautils do (one token stream, uniformly random start offsets, no BOS).
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

namespace llmpress {

struct CalibrationOptions {
  int64_t nsamples = 128;
  int64_t seqlen = 512;
  uint64_t seed = 0;
};

// The text of a calibration file: plain text as is, or for .jsonl the "text" field of every line
// joined with blank lines (as the GPTQ reference joins dataset records). Throws naming the file
// and line for malformed JSON lines or lines without a string "text".
std::string read_calibration_text(const std::string& path);

// [nsamples, seqlen] int64 token windows of `tokens`. seqlen is capped at `max_context` (the
// model's context; <= 0: no cap) and at the stream's length; windows may overlap. Deterministic
// for a seed on every platform (our own draw from mt19937_64, not std::uniform_int_distribution,
// whose output differs between standard libraries).
at::Tensor calibration_windows(const std::vector<int32_t>& tokens, const CalibrationOptions& options,
                               int64_t max_context = 0);

}  // namespace llmpress

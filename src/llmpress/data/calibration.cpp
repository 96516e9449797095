#include "llmpress/data/calibration.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <random>
#include <sstream>

#include "llmpress/core/error.h"
#include "llmpress/data/text.h"

namespace llmpress {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::string read_calibration_text(const std::string& path) {
  std::string contents = read_text_file(path);
  if (!ends_with(path, ".jsonl")) return contents;
  std::istringstream lines(contents);
  std::string line, joined;
  int64_t number = 0;
  while (std::getline(lines, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw file_error(path, "line " + std::to_string(number) + ": not valid JSON (" + e.what() + ")");
    }
    if (!record.is_object() || !record.contains("text") || !record["text"].is_string())
      throw file_error(path, "line " + std::to_string(number) + ": no string field \"text\"");
    if (!joined.empty()) joined += "\n\n";
    joined += record["text"].get<std::string>();
  }
  return joined;
}

at::Tensor calibration_windows(const std::vector<int32_t>& tokens, const CalibrationOptions& options,
                               int64_t max_context) {
  if (options.nsamples <= 0 || options.seqlen <= 0) throw Error("calibration: --nsamples and --seqlen must be positive");
  const int64_t available = int64_t(tokens.size());
  if (available < 2) throw Error("calibration: the text has " + std::to_string(available) + " tokens, too few to sample");
  int64_t seqlen = options.seqlen;
  if (max_context > 0) seqlen = std::min(seqlen, max_context);
  seqlen = std::min(seqlen, available);

  std::mt19937_64 rng(options.seed);
  const uint64_t starts = uint64_t(available - seqlen + 1);  // every start that leaves a whole window
  at::Tensor windows = at::empty({options.nsamples, seqlen}, at::kLong);
  int64_t* out = windows.data_ptr<int64_t>();
  for (int64_t s = 0; s < options.nsamples; ++s) {
    const int64_t start = int64_t(rng() % starts);  // modulo bias is negligible for 64-bit draws
    for (int64_t t = 0; t < seqlen; ++t) out[s * seqlen + t] = tokens[size_t(start + t)];
  }
  return windows;
}

}  // namespace llmpress

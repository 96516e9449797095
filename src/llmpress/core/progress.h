#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace llmpress {

// Progress of long work on stderr: "label  done/total  rate unit/s  elapsed  ETA".
// On a terminal the line is redrawn in place; otherwise a line is printed at most every few seconds.
class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit, bool enabled = true);
  // `done` items finished so far; `work` is the amount the rate is measured in (e.g. tokens).
  void update(int64_t done, int64_t work = -1, const std::string& detail = "");
  void finish(const std::string& detail = "");
  double elapsed_seconds() const;

 private:
  void print(int64_t done, int64_t work, const std::string& detail, bool final);

  std::string label_, unit_;
  int64_t total_;
  bool enabled_, tty_;
  std::chrono::steady_clock::time_point start_, last_print_;
  int64_t last_done_ = 0, last_work_ = 0;
};

std::string format_duration(double seconds);

}  // namespace llmpress

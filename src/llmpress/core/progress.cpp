#include "llmpress/core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace llmpress {

std::string format_duration(double seconds) {
  char buf[32];
  if (seconds < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", seconds);
  } else if (seconds < 3600) {
    std::snprintf(buf, sizeof buf, "%dm%02ds", int(seconds) / 60, int(seconds) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%dh%02dm", int(seconds) / 3600, (int(seconds) % 3600) / 60);
  }
  return buf;
}

Progress::Progress(std::string label, int64_t total, std::string unit, bool enabled)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), enabled_(enabled),
      tty_(isatty(STDERR_FILENO) != 0), start_(std::chrono::steady_clock::now()), last_print_(start_) {}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t done, int64_t work, const std::string& detail) {
  last_done_ = done;
  last_work_ = work < 0 ? done : work;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_print_).count();
  if (since < (tty_ ? 0.2 : 5.0) && done < total_) return;
  last_print_ = now;
  print(done, last_work_, detail, false);
}

void Progress::finish(const std::string& detail) { print(last_done_, last_work_, detail, true); }

void Progress::print(int64_t done, int64_t work, const std::string& detail, bool final) {
  if (!enabled_) return;
  const double elapsed = elapsed_seconds();
  const double rate = elapsed > 0 ? double(work) / elapsed : 0.0;
  const double eta = done > 0 && done < total_ ? elapsed * double(total_ - done) / double(done) : 0.0;
  char line[256];
  std::snprintf(line, sizeof line, "%s %lld/%lld  %.1f %s/s  elapsed %s", label_.c_str(), (long long)done,
                (long long)total_, rate, unit_.c_str(), format_duration(elapsed).c_str());
  std::string text = line;
  if (!final && done < total_) text += "  ETA " + format_duration(eta);
  if (!detail.empty()) text += "  " + detail;
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s%s", text.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", text.c_str());
  }
  std::fflush(stderr);
}

}  // namespace llmpress

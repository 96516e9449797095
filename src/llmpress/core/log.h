#pragma once
// The one place library code reports to the user: warnings, notes and progress lines go through
// here instead of stderr directly, so a front-end (or a test) can redirect, silence or count them.
#include <functional>
#include <string>

namespace llmpress {

enum class LogLevel { Info, Note, Warning };

// Receives every message; the default writes "warning: ..." / "note: ..." / "..." lines to stderr.
using LogSink = std::function<void(LogLevel level, const std::string& message)>;

// Installs `sink` (an empty function restores the default) and returns the previous one.
LogSink set_log_sink(LogSink sink);

void log_info(const std::string& message);
void log_note(const std::string& message);
void log_warning(const std::string& message);

// printf-style formatting into a std::string, for building messages.
std::string strprintf(const char* format, ...) __attribute__((format(printf, 1, 2)));

// Collects the messages of a scope (tests, or a front-end that summarizes them); restores the
// previous sink on destruction.
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  const std::string& text() const { return text_; }
  int warnings() const { return warnings_; }

 private:
  LogSink previous_;
  std::string text_;
  int warnings_ = 0;
};

}  // namespace llmpress

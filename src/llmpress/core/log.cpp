#include "llmpress/core/log.h"

#include <cstdarg>
#include <cstdio>
#include <mutex>

namespace llmpress {

namespace {

void write_to_stderr(LogLevel level, const std::string& message) {
  const char* prefix = level == LogLevel::Warning ? "warning: " : level == LogLevel::Note ? "note: " : "";
  std::fprintf(stderr, "%s%s\n", prefix, message.c_str());
  std::fflush(stderr);
}

std::mutex& sink_mutex() {
  static std::mutex mutex;
  return mutex;
}

LogSink& current_sink() {
  static LogSink sink = write_to_stderr;
  return sink;
}

void emit(LogLevel level, const std::string& message) {
  std::lock_guard<std::mutex> lock(sink_mutex());
  current_sink()(level, message);
}

}  // namespace

LogSink set_log_sink(LogSink sink) {
  std::lock_guard<std::mutex> lock(sink_mutex());
  LogSink previous = current_sink();
  current_sink() = sink ? std::move(sink) : LogSink(write_to_stderr);
  return previous;
}

void log_info(const std::string& message) { emit(LogLevel::Info, message); }
void log_note(const std::string& message) { emit(LogLevel::Note, message); }
void log_warning(const std::string& message) { emit(LogLevel::Warning, message); }

std::string strprintf(const char* format, ...) {
  va_list args;
  va_start(args, format);
  va_list copy;
  va_copy(copy, args);
  const int length = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  std::string text(length > 0 ? size_t(length) : 0, '\0');
  if (length > 0) std::vsnprintf(text.data(), text.size() + 1, format, args);
  va_end(args);
  return text;
}

LogCapture::LogCapture() {
  previous_ = set_log_sink([this](LogLevel level, const std::string& message) {
    if (level == LogLevel::Warning) ++warnings_;
    text_ += (level == LogLevel::Warning ? "warning: " : level == LogLevel::Note ? "note: " : "") + message + "\n";
  });
}

LogCapture::~LogCapture() { set_log_sink(previous_); }

}  // namespace llmpress

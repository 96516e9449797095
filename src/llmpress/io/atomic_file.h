#pragma once
// Crash-safe output: nothing appears at the destination until the write is complete.
// A failed or interrupted export therefore never leaves a truncated file (or a half-written
// model directory) where the user's previous one was.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace llmpress {

// Writes go to "DEST.tmp-PID-XXXXXX" in the destination's folder (same filesystem, so rename is
// atomic); commit() flushes, fsyncs and renames over DEST. Without commit() the destructor
// deletes the temporary file and DEST is untouched. Temporaries a killed process left beside DEST
// (its PID no longer runs) are removed when the next writer of DEST starts; on Ctrl-C / SIGTERM the
// handler of install_interrupt_cleanup() removes the open ones before the process ends.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  void write(const std::string& text) { write(text.data(), text.size()); }
  void write_zeros(size_t count);
  uint64_t bytes_written() const { return written_; }
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }

 private:
  std::string path_;
  std::string temp_path_;
  std::FILE* file_ = nullptr;
  int slot_ = -1;  // in the interrupt handler's list
  uint64_t written_ = 0;
  bool committed_ = false;
};

// Removes "DEST.tmp-PID-*" (and "DEST.old-PID-*" where DEST exists) that a process no longer
// running left beside `path`; `prefix` names other temporaries the same way ("PATH.tmp-", or a work
// folder's ".llmpress-work-"). Returns how many were removed.
int remove_stale_temporaries(const std::string& folder, const std::string& prefix, const std::string& dest = "");

// "PREFIXPID-XXXXXX": the mkstemp / mkdtemp pattern of a temporary that remove_stale_temporaries knows.
std::string temporary_pattern(const std::string& prefix);

// SIGINT and SIGTERM remove the temporary files of unfinished AtomicFiles, then end the process as the
// signal would (exit status 128 + signal). Call once from main().
void install_interrupt_cleanup();

// Whole-file convenience: writes `content` to `path` atomically.
void write_file_atomic(const std::string& path, const std::string& content);

// Throws Error naming `path` unless it can receive an output, so that a job fails before its work and
// never replaces what the user had: its folder exists and is writable; a file output is not a folder;
// a folder output is absent, empty, or a model folder llmpress wrote (config.json with an "llmpress"
// section, or an adapter folder with our model card) — any other folder is refused.
void check_output_path(const std::string& path, bool folder);

// The first line of the README.md model card in a LoRA adapter folder llmpress wrote (PEFT's adapter_config.json
// has no room for our own keys): check_output_path may replace such a folder.
inline constexpr const char* kLlmpressAdapterCardMarker = "<!-- written by llmpress: a LoRA adapter -->";

// A directory built in "DEST.tmp-XXXXXX" next to DEST and renamed into place by commit().
// An existing DEST directory (check_output_path) is replaced only after the new one is complete (it is
// moved aside, the new one renamed in, then the old one deleted). Without commit() the destructor
// removes the temporary directory.
class AtomicDirectory {
 public:
  explicit AtomicDirectory(const std::string& path);
  ~AtomicDirectory();
  AtomicDirectory(const AtomicDirectory&) = delete;
  AtomicDirectory& operator=(const AtomicDirectory&) = delete;

  // Where to write the directory's files while it is being built.
  const std::string& temp_path() const { return temp_path_; }
  std::string file(const std::string& name) const { return temp_path_ + "/" + name; }
  const std::string& path() const { return path_; }
  void commit();

 private:
  std::string path_;
  std::string temp_path_;
  bool committed_ = false;
};

}  // namespace llmpress

#pragma once
// Crash-safe output: nothing appears at the destination until the write is complete.
// A failed or interrupted export therefore never leaves a truncated file (or a half-written
// model directory) where the user's previous one was.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace llmpress {

// Writes go to "DEST.tmp-XXXXXX" in the destination's folder (same filesystem, so rename is
// atomic); commit() flushes, fsyncs and renames over DEST. Without commit() the destructor
// deletes the temporary file and DEST is untouched.
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
  uint64_t written_ = 0;
  bool committed_ = false;
};

// Whole-file convenience: writes `content` to `path` atomically.
void write_file_atomic(const std::string& path, const std::string& content);

// Throws Error naming `path` unless it can receive an output, so that a job fails before its work and
// never replaces what the user had: its folder exists and is writable; a file output is not a folder;
// a folder output is absent, empty, or a model folder llmpress wrote (config.json with an "llmpress"
// section) — any other folder is refused.
void check_output_path(const std::string& path, bool folder);

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

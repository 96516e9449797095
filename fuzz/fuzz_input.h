#pragma once
// Shared by every fuzz harness: the readers take paths (they memory-map), so each input is written to
// a file of the name the reader expects, in one private folder per process. A reader may reject any
// input with llmpress::Error (that is the clear error users see); anything else escaping the reader
// -- another exception type, a crash, a sanitizer report, a huge allocation -- is a finding.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "llmpress/core/error.h"

namespace fuzz {

// The process's scratch folder (under TMPDIR, or /dev/shm when it exists: no disk traffic), removed at exit.
inline const std::string& scratch_dir() {
  static const std::string* dir = [] {
    const char* base = std::getenv("TMPDIR");
    std::string root = base && *base ? base : (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    std::string pattern = root + "/llmpress-fuzz-XXXXXX";
    if (!mkdtemp(pattern.data())) std::abort();
    // Never destroyed: the exit handler (libFuzzer ends with exit()) runs after static destructors.
    const std::string* path = new std::string(pattern);
    std::atexit([] { std::filesystem::remove_all(scratch_dir()); });
    return path;
  }();
  return *dir;
}

// Writes bytes to scratch_dir()/name and returns the path.
inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

// Piece `index` of an input split at the separator line "\n--8<--\n" (for inputs that are a
// folder of files: config.json and model.safetensors). Missing pieces are empty.
inline std::string piece(const uint8_t* data, size_t size, int index) {
  static const std::string separator = "\n--8<--\n";
  const std::string all(reinterpret_cast<const char*>(data), size);
  size_t begin = 0;
  for (int i = 0; i < index; ++i) {
    const size_t at = all.find(separator, begin);
    if (at == std::string::npos) return "";
    begin = at + separator.size();
  }
  const size_t end = all.find(separator, begin);
  return all.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

// Runs one reader call: llmpress::Error is the expected way to refuse an input.
template <typename F>
void expect_clean(F&& read) {
  try {
    read();
  } catch (const llmpress::Error&) {
  }
}

}  // namespace fuzz

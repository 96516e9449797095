#pragma once
// Helpers shared by the tests: where ../shared is, and skipping cleanly without it.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace llmpress::test {

// The whole file as bytes (empty when it cannot be read).
inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// LLMPRESS_SHARED_DIR (environment) overrides the CMake option of the same name.
inline std::string shared_dir() {
  if (const char* env = std::getenv("LLMPRESS_SHARED_DIR"); env && *env) return env;
  return LLMPRESS_SHARED_DIR_DEFAULT;
}

inline std::string shared_path(const std::string& relative) { return shared_dir() + "/" + relative; }

// A fresh empty directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "llmpress-test-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { std::error_code ec; std::filesystem::remove_all(path_, ec); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace llmpress::test

// Skips the current test with a clear message when a shared file is absent.
#define LLMPRESS_REQUIRE_SHARED(relative)                                                        \
  do {                                                                                            \
    if (!std::filesystem::exists(::llmpress::test::shared_path(relative)))                        \
      GTEST_SKIP() << "needs " << ::llmpress::test::shared_path(relative)                         \
                   << " (set LLMPRESS_SHARED_DIR or -DLLMPRESS_SHARED_DIR to the shared folder)"; \
  } while (0)

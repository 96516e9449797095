#pragma once
#include <stdexcept>
#include <string>

namespace llmpress {

// Every user-facing failure (bad file, bad option, numerical breakdown) is an Error.
// The message names the file or option and the problem; the CLI prints it and exits 1.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Error about a specific file: "FILE: problem".
inline Error file_error(const std::string& path, const std::string& problem) {
  return Error(path + ": " + problem);
}

}  // namespace llmpress

#include "llmpress/data/text.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "llmpress/core/error.h"

namespace llmpress {

void check_readable_file(const std::string& path) {
  if (!std::filesystem::is_regular_file(path) || !std::ifstream(path))
    throw file_error(path, "cannot read (no such file, or not a readable file)");
}

std::string read_text_file(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (std::filesystem::is_directory(status)) throw file_error(path, "is a folder, not a text file");
  if (std::filesystem::exists(status) && !std::filesystem::is_regular_file(status))
    throw file_error(path, "is not a regular file (a device or a pipe?); give a text file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw file_error(path, std::string("cannot read text file (") + std::strerror(errno) + ")");
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) throw file_error(path, "read failed");
  std::string text = contents.str();
  if (const void* nul = std::memchr(text.data(), 0, text.size()))
    throw file_error(path, "is not a text file (a NUL byte at offset " +
                               std::to_string(static_cast<const char*>(nul) - text.data()) +
                               "); give plain UTF-8 text or .jsonl");
  return text;
}

}  // namespace llmpress

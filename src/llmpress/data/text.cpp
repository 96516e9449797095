#include "llmpress/data/text.h"

#include <nlohmann/json.hpp>

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

void for_each_json_line(const std::string& path, const std::function<void(const nlohmann::json&, const std::string&)>& each) {
  std::istringstream lines(read_text_file(path));
  std::string line;
  for (int64_t number = 1; std::getline(lines, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(number);
    nlohmann::json value;
    try {
      value = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(where + ": not a JSON object (" + std::string(e.what()) + ")");
    }
    each(value, where);
  }
}

}  // namespace llmpress

#pragma once
#include <nlohmann/json_fwd.hpp>

#include <functional>
#include <string>

namespace llmpress {

// The whole file as bytes; throws "PATH: ..." when it is missing or unreadable, is not a regular file
// (a folder, /dev/zero, a pipe) or is not text (holds NUL bytes: a model or other binary file given
// where text is meant).
std::string read_text_file(const std::string& path);

// Throws "PATH: cannot read ..." unless `path` is a readable regular file: the check before a long job,
// without reading a large file twice.
void check_readable_file(const std::string& path);

// Calls `each(value, "PATH:LINE")` for every non-blank line of a JSON-lines file, in order; throws
// naming the file and line when a line is not JSON.
void for_each_json_line(const std::string& path, const std::function<void(const nlohmann::json&, const std::string&)>& each);

}  // namespace llmpress

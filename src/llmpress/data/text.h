#pragma once
#include <string>

namespace llmpress {

// The whole file as bytes; throws "PATH: cannot read (reason)" when it is missing or unreadable.
std::string read_text_file(const std::string& path);

}  // namespace llmpress

#include "llmpress/data/text.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "llmpress/core/error.h"

namespace llmpress {

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw file_error(path, std::string("cannot read text file (") + std::strerror(errno) + ")");
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) throw file_error(path, "read failed");
  return contents.str();
}

}  // namespace llmpress

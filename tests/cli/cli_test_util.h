#pragma once
// Runs the llmpress binary as a user would and captures what it printed.
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "test_util.h"

namespace llmpress::test {

struct CommandResult {
  int exit_code = -1;
  std::string out, err;
};

// Runs a shell command line (stdin /dev/null), capturing stdout, stderr and the exit code.
inline CommandResult run_command(const std::string& command_line) {
  TempDir dir;
  const std::string command = command_line + " >" + dir.file("out") + " 2>" + dir.file("err") + " </dev/null";
  const int status = std::system(command.c_str());
  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = slurp(dir.file("out"));
  result.err = slurp(dir.file("err"));
  return result;
}

inline CommandResult run_llmpress(const std::string& args) { return run_command(std::string(LLMPRESS_BINARY) + " " + args); }

}  // namespace llmpress::test

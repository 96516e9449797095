#pragma once
// Tests that check us against PyTorch run Debian's python3-torch (/usr/bin/python3; the python3 first
// on PATH may be another interpreter without it); LLMPRESS_TORCH_PYTHON names another.
#include <cstdlib>
#include <filesystem>
#include <string>

namespace llmpress::test {

inline std::string torch_python() {
  const char* env = std::getenv("LLMPRESS_TORCH_PYTHON");
  return env && *env ? env : "/usr/bin/python3";
}

// Empty when the reference can run; otherwise why not.
inline std::string torch_reference_unavailable() {
  if (!std::filesystem::exists(torch_python())) return torch_python() + " is absent";
  const std::string probe = torch_python() + " -c 'import torch, numpy' > /dev/null 2>&1";
  if (std::system(probe.c_str()) != 0) return torch_python() + " cannot import torch and numpy";
  return "";
}

}  // namespace llmpress::test

#pragma once
// Helpers shared by the export tests: load a whole checkpoint as NamedTensors.
#include <string>
#include <vector>

#include "llmpress/export/named_tensor.h"
#include "llmpress/io/checkpoint.h"

namespace llmpress::test {

inline std::vector<NamedTensor> load_all(const Checkpoint& checkpoint) {
  std::vector<NamedTensor> out;
  for (const auto& entry : checkpoint.tensors) out.push_back({entry.first, checkpoint.load(entry.first)});
  return out;
}

}  // namespace llmpress::test

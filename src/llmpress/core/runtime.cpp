#include "llmpress/core/runtime.h"

#include <malloc.h>

#include <cstdint>
#include <fstream>
#include <string>

namespace llmpress {

void tune_memory_allocator() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);            // glibc's maximum: blocks below 32 MiB come from the heap
  mallopt(M_TRIM_THRESHOLD, 1 << 30);             // return heap memory only when 1 GiB is free at its top
  mallopt(M_TOP_PAD, 64 << 20);                   // grow the heap in large steps
}

namespace {

uint64_t read_number(const std::string& path) {
  std::ifstream in(path);
  uint64_t value = 0;
  return in >> value ? value : 0;  // "max" (no limit) reads as 0
}

// What the process's memory cgroup still allows (v1 or v2; containers set these), 0 without a limit.
uint64_t cgroup_headroom_bytes() {
  std::ifstream self("/proc/self/cgroup");
  std::string line;
  while (std::getline(self, line)) {
    std::string base, limit_file, usage_file;
    if (line.find(":memory:") != std::string::npos) {
      base = "/sys/fs/cgroup/memory" + line.substr(line.find(":memory:") + 8);
      limit_file = "/memory.limit_in_bytes", usage_file = "/memory.usage_in_bytes";
    } else if (line.rfind("0::", 0) == 0) {
      base = "/sys/fs/cgroup" + line.substr(3);
      limit_file = "/memory.max", usage_file = "/memory.current";
    } else {
      continue;
    }
    const uint64_t limit = read_number(base + limit_file), usage = read_number(base + usage_file);
    if (limit > 0 && limit < (uint64_t(1) << 60)) return limit > usage ? limit - usage : 1;
  }
  return 0;
}

}  // namespace

uint64_t available_memory_bytes() {
  uint64_t available = 0;
  std::ifstream meminfo("/proc/meminfo");
  std::string key, unit;
  uint64_t kib = 0;
  while (meminfo >> key >> kib >> unit)
    if (key == "MemAvailable:") available = kib * 1024;
  const uint64_t headroom = cgroup_headroom_bytes();
  return headroom > 0 && (available == 0 || headroom < available) ? headroom : available;
}

}  // namespace llmpress

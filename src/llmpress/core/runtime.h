#pragma once
#include <cstdint>

namespace llmpress {

// Keeps freed tensor memory in the process instead of returning it to the OS after every op.
// glibc's defaults unmap large blocks on free, so each forward pass paid page faults for every
// fresh activation buffer (a 4x slowdown of perplexity on stories260K). Call once at start-up.
void tune_memory_allocator();

// MemAvailable of /proc/meminfo, or less where the process's memory cgroup allows less (0 where unknown).
uint64_t available_memory_bytes();

}  // namespace llmpress

#include "llmpress/core/runtime.h"

#include <malloc.h>

namespace llmpress {

void tune_memory_allocator() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);            // glibc's maximum: blocks below 32 MiB come from the heap
  mallopt(M_TRIM_THRESHOLD, 1 << 30);             // return heap memory only when 1 GiB is free at its top
  mallopt(M_TOP_PAD, 64 << 20);                   // grow the heap in large steps
}

}  // namespace llmpress

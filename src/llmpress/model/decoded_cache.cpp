#include "llmpress/model/decoded_cache.h"

#include <cstdlib>
#include <list>
#include <mutex>
#include <tuple>

namespace llmpress {

namespace {

struct Entry {
  const void* owner;
  at::Device device;
  at::ScalarType dtype;
  at::Tensor tensor;
  int64_t bytes;
};

struct State {
  std::mutex mutex;
  std::list<Entry> entries;  // most recently used first
  int64_t budget = -1;       // -1: not read from the environment yet
  int64_t used = 0;
};

State& state() {
  static State s;
  return s;
}

int64_t default_budget() {
  if (const char* env = std::getenv("LLMPRESS_DECODE_CACHE_MIB"); env && *env) return std::atoll(env) * 1048576;
  return int64_t(256) * 1048576;
}

void evict_to(State& s, int64_t limit) {
  while (s.used > limit && !s.entries.empty()) {
    s.used -= s.entries.back().bytes;
    s.entries.pop_back();
  }
}

}  // namespace

at::Tensor DecodedCache::get(const void* owner, const at::Device& device, at::ScalarType dtype,
                             const std::function<at::Tensor()>& decode) {
  State& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.budget < 0) s.budget = default_budget();
    for (auto it = s.entries.begin(); it != s.entries.end(); ++it) {
      if (it->owner == owner && it->device == device && it->dtype == dtype) {
        s.entries.splice(s.entries.begin(), s.entries, it);
        return it->tensor;
      }
    }
  }
  // Decoded outside the lock: decoding is the slow part and may run in parallel for different weights.
  at::Tensor tensor = decode().to(device, dtype).contiguous();
  const int64_t bytes = tensor.numel() * int64_t(tensor.element_size());
  std::lock_guard<std::mutex> lock(s.mutex);
  if (bytes <= s.budget) {
    evict_to(s, s.budget - bytes);
    s.entries.push_front({owner, device, dtype, tensor, bytes});
    s.used += bytes;
  }
  return tensor;
}

void DecodedCache::forget(const void* owner) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  for (auto it = s.entries.begin(); it != s.entries.end();) {
    if (it->owner == owner) {
      s.used -= it->bytes;
      it = s.entries.erase(it);
    } else {
      ++it;
    }
  }
}

void DecodedCache::set_budget_bytes(int64_t bytes) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.budget = bytes < 0 ? 0 : bytes;
  evict_to(s, s.budget);
}

int64_t DecodedCache::budget_bytes() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.budget < 0) s.budget = default_budget();
  return s.budget;
}

int64_t DecodedCache::cached_bytes() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.used;
}

}  // namespace llmpress

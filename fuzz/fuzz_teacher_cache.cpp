// Teacher-logit caches (offline KD): header, row table and every cached row looked up. A cache must
// name the harness's training rows, so FUZZ_WRITE_SEED=FILE writes a valid one for them (the layout of
// distill/teacher_cache.h, written here) as the seed.
#include <fstream>

#include "fuzz_input.h"
#include "llmpress/distill/teacher_cache.h"

namespace {

const llmpress::TrainingData& rows() {
  static const llmpress::TrainingData data = [] {
    std::vector<int32_t> tokens;
    for (int i = 0; i < 200; ++i) tokens.push_back(i % 97);
    return llmpress::TrainingData::from_tokens(tokens, 16);
  }();
  return data;
}

template <typename T>
void append(std::string& bytes, T value) {
  bytes.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

void write_seed(const char* path) {
  const int64_t vocab = 97, k = 4, seqlen = rows().seqlen(), entries = 2;
  const std::string header = "{\"version\": 1, \"vocab\": 97, \"k\": 4, \"temperature\": 1.0, \"seqlen\": " +
                             std::to_string(seqlen) + ", \"entries\": 2, \"data\": \"" +
                             std::to_string(rows().fingerprint()) + "\"}";
  std::string bytes(llmpress::teacher_cache_layout::kMagic, 8);
  append<uint64_t>(bytes, header.size());
  bytes += header;
  for (int64_t row = 0; row < entries; ++row) append<int64_t>(bytes, 2 * row);
  for (int64_t e = 0; e < entries; ++e) {
    for (int64_t i = 0; i < seqlen * k; ++i) append<int32_t>(bytes, int32_t(i % vocab));
    for (int64_t i = 0; i < seqlen * k; ++i) append<float>(bytes, -1.5f - float(i % k));
    for (int64_t i = 0; i < seqlen; ++i) append<float>(bytes, -3.0f);
  }
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* seed = std::getenv("FUZZ_WRITE_SEED")) write_seed(seed);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_input("teacher.cache", data, size);
  fuzz::expect_clean([&] {
    const llmpress::TeacherCache cache = llmpress::TeacherCache::open(path, rows());
    for (int64_t r = 0; r < rows().rows(); ++r) fuzz::expect_clean([&] { (void)cache.lookup({r}); });
  });
  return 0;
}

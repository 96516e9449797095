// llmpress's own work files (resume points, stage outputs in --work-dir): header JSON, dtypes,
// shapes, offsets and per-tensor checksums.
#include "fuzz_input.h"
#include "llmpress/io/tensor_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_input("layer.tensors", data, size);
  fuzz::expect_clean([&] {
    nlohmann::json metadata;
    (void)llmpress::load_tensor_file(path, at::kCPU, &metadata);
  });
  return 0;
}

// One safetensors file on its own: header JSON, dtypes, shapes, offsets, and every tensor decoded.
#include <vector>

#include "fuzz_input.h"
#include "llmpress/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_input("model.safetensors", data, size);
  fuzz::expect_clean([&] {
    const llmpress::SafetensorsFile file = llmpress::read_safetensors(path);
    std::vector<float> values;
    for (const auto& tensor : file.tensors) {
      values.resize(size_t(tensor.numel()));
      if (tensor.type != llmpress::TensorType::U8) llmpress::decode_to_f32(tensor.type, tensor.data, tensor.numel(), values.data());
    }
  });
  return 0;
}

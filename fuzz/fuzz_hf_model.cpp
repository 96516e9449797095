// Hugging Face folders: config.json (with GPTQ or compressed-tensors quantization configs) and
// model.safetensors, given as one input split at "\n--8<--\n".
#include <filesystem>

#include "fuzz_checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    const std::string d = fuzz::scratch_dir() + "/model";
    std::filesystem::create_directories(d);
    return d;
  }();
  const std::string config = fuzz::piece(data, size, 0), weights = fuzz::piece(data, size, 1);
  fuzz::write_input("model/config.json", reinterpret_cast<const uint8_t*>(config.data()), config.size());
  fuzz::write_input("model/model.safetensors", reinterpret_cast<const uint8_t*>(weights.data()), weights.size());
  fuzz::open_and_exercise(dir);
  return 0;
}

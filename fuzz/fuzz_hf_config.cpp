// config.json on its own: every hyper-parameter's type and range.
#include "fuzz_input.h"
#include "llmpress/io/hf_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_input("config.json", data, size);
  fuzz::expect_clean([&] { (void)llmpress::read_hf_config(path); });
  return 0;
}

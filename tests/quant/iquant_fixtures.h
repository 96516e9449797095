#pragma once
// ggml-made blocks of the i-quant and ternary types with ggml's own dequantization
// (tests/quant/fixtures/ggml_iquants/<TYPE>.bin; how they were made: test_ggml_iquants.cpp).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "llmpress/io/tensor_data.h"

namespace llmpress::test {

inline constexpr TensorType kIquantGgmlTypes[] = {
    TensorType::IQ1_S,  TensorType::IQ1_M,  TensorType::IQ2_XXS, TensorType::IQ2_XS,
    TensorType::IQ2_S,  TensorType::IQ3_XXS, TensorType::IQ3_S,  TensorType::IQ4_NL,
    TensorType::IQ4_XS, TensorType::TQ1_0,  TensorType::TQ2_0};

struct IquantFixture {
  std::vector<uint8_t> file;  // whole file, empty when missing
  uint32_t type = 0;
  int64_t cases = 0, per_case = 0;  // elements per case
  uint64_t case_bytes = 0;

  // Block bytes and ggml's floats of case c.
  const uint8_t* bytes(int64_t c) const { return file.data() + 16 + c * case_bytes; }
  std::vector<float> floats(int64_t c) const {
    std::vector<float> out(static_cast<size_t>(per_case));
    std::memcpy(out.data(), file.data() + 16 + cases * case_bytes + c * per_case * 4, out.size() * 4);
    return out;
  }
};

// Reads and checks the header; a missing or malformed file is a test failure (they are committed).
inline IquantFixture read_iquant_fixture(TensorType type) {
  IquantFixture f;
  const auto path = std::filesystem::path(__FILE__).parent_path() / "fixtures" / "ggml_iquants" /
                    (tensor_type_name(type) + ".bin");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "missing fixture " << path;
    return f;
  }
  std::vector<uint8_t> file{std::istreambuf_iterator<char>(in), {}};
  uint32_t head[4] = {0, 0, 0, 0};
  if (file.size() >= 16) std::memcpy(head, file.data(), 16);
  if (head[0] != 0x51494c4cu || head[1] != uint32_t(type)) {
    ADD_FAILURE() << path << " is not a fixture of " << tensor_type_name(type);
    return f;
  }
  f.type = head[1];
  f.cases = head[2];
  f.per_case = head[3];
  f.case_bytes = tensor_bytes(type, uint64_t(f.per_case));
  if (file.size() != 16 + uint64_t(f.cases) * (f.case_bytes + uint64_t(f.per_case) * 4)) {
    ADD_FAILURE() << path << " has " << file.size() << " bytes, not what its header says";
    return f;
  }
  f.file = std::move(file);
  return f;
}

}  // namespace llmpress::test

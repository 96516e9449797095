#include <gtest/gtest.h>

#include "io_test_builders.h"
#include "llmpress/core/error.h"
#include "llmpress/core/half.h"
#include "llmpress/io/mapped_file.h"
#include "llmpress/io/tensor_data.h"
#include "test_util.h"

using namespace llmpress;
using namespace llmpress::test;

TEST(TensorData, TypeInfoAndBytes) {
  EXPECT_EQ(tensor_type_info(0u)->block_bytes, 4);
  EXPECT_EQ(tensor_type_info(8u)->block_bytes, 34);
  EXPECT_EQ(tensor_type_info(2u)->block_bytes, 18);
  EXPECT_EQ(tensor_type_info(30u)->block_bytes, 2);
  EXPECT_EQ(tensor_type_info(3u)->block_bytes, 20);  // Q4_1
  EXPECT_EQ(tensor_type_info(20u)->block_bytes, 18);   // IQ4_NL
  EXPECT_EQ(tensor_type_info(23u)->block_bytes, 136);  // IQ4_XS
  EXPECT_EQ(tensor_type_info(15u), nullptr);  // Q8_K: a type ggml knows but llmpress does not decode
  EXPECT_EQ(ggml_type_info(15u)->block_bytes, 292);
  EXPECT_EQ(tensor_type_info(999u), nullptr);
  EXPECT_EQ(ggml_type_info(4u), nullptr);  // removed Q4_2
  // Errors name types as users know them.
  EXPECT_EQ(ggml_type_name(23), "IQ4_XS");
  EXPECT_EQ(ggml_type_name(39), "MXFP4");
  EXPECT_EQ(ggml_type_name(31), "Q4_0_4_4 (removed from ggml)");
  EXPECT_EQ(ggml_type_name(99), "unknown ggml type id 99");
  EXPECT_NE(decodable_type_names().find("IQ1_M"), std::string::npos);
  EXPECT_EQ(decodable_type_names().find("Q8_K"), std::string::npos);
  EXPECT_EQ(tensor_type_name(TensorType::Q8_0), "Q8_0");
  EXPECT_EQ(tensor_bytes(TensorType::F16, 10), 20u);
  EXPECT_EQ(tensor_bytes(TensorType::Q8_0, 64), 68u);
  EXPECT_EQ(tensor_bytes(TensorType::Q4_0, 96), 54u);
  EXPECT_THROW(tensor_bytes(TensorType::Q4_0, 33), Error);
  EXPECT_THROW(tensor_bytes(TensorType::F32, uint64_t(1) << 63), Error);  // byte count overflow
}

TEST(TensorData, DecodePlainFloats) {
  const std::vector<float> values = {0.0f, -1.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f};
  std::vector<uint16_t> f16, bf16;
  for (float v : values) { f16.push_back(f32_to_f16(v)); bf16.push_back(f32_to_bf16(v)); }
  std::vector<float> out(values.size());
  decode_to_f32(TensorType::F16, reinterpret_cast<const uint8_t*>(f16.data()), int64_t(values.size()), out.data());
  EXPECT_EQ(out, values);  // all exactly representable in f16
  decode_to_f32(TensorType::BF16, reinterpret_cast<const uint8_t*>(bf16.data()), int64_t(values.size()), out.data());
  for (size_t i = 0; i < values.size(); ++i) EXPECT_NEAR(out[i], values[i], std::abs(values[i]) / 128);
  decode_to_f32(TensorType::F32, float_bytes(values).data(), int64_t(values.size()), out.data());
  EXPECT_EQ(out, values);
}

TEST(TensorData, DecodeQ8_0) {
  Bytes b;
  for (int block = 0; block < 2; ++block) {
    b.uint(f32_to_f16(block == 0 ? 0.5f : -0.25f), 2);
    for (int j = 0; j < 32; ++j) b.u8(uint8_t(int8_t(j * 8 - 128)));
  }
  ASSERT_EQ(b.size(), 68u);
  std::vector<float> out(64);
  decode_to_f32(TensorType::Q8_0, b.b.data(), 64, out.data());
  for (int j = 0; j < 32; ++j) {
    EXPECT_EQ(out[j], 0.5f * float(j * 8 - 128));
    EXPECT_EQ(out[32 + j], -0.25f * float(j * 8 - 128));
  }
}

TEST(TensorData, DecodeQ4_0NibbleOrder) {
  Bytes b;
  b.uint(f32_to_f16(2.0f), 2);
  // Byte j: low nibble = element j, high nibble = element j + 16.
  for (int j = 0; j < 16; ++j) b.u8(uint8_t((j & 0xf) | ((15 - j) << 4)));
  std::vector<float> out(32);
  decode_to_f32(TensorType::Q4_0, b.b.data(), 32, out.data());
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], 2.0f * float(j - 8)) << j;
    EXPECT_EQ(out[j + 16], 2.0f * float(15 - j - 8)) << j;
  }
}

TEST(TensorData, DecodeRejectsPartialBlocks) {
  std::vector<uint8_t> zeros(64);
  std::vector<float> out(40);
  EXPECT_THROW(decode_to_f32(TensorType::Q8_0, zeros.data(), 40, out.data()), Error);
  EXPECT_THROW(decode_to_f32(TensorType::Q4_0, zeros.data(), 40, out.data()), Error);
}

TEST(MappedFile, OpenRequireAndErrors) {
  TempDir dir;
  write_bytes(dir.file("five"), {1, 2, 3, 4, 5});
  auto file = MappedFile::open(dir.file("five"));
  EXPECT_EQ(file->size(), 5u);
  EXPECT_EQ(file->data()[4], 5);
  EXPECT_NO_THROW(file->require(0, 5, "all"));
  EXPECT_NO_THROW(file->require(5, 0, "nothing at the end"));
  try {
    file->require(3, 3, "the widget");
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(dir.file("five") + ": the widget", 0), 0u) << msg;
    EXPECT_NE(msg.find("5 bytes"), std::string::npos) << msg;
  }
  EXPECT_THROW(file->require(UINT64_MAX, 2, "overflowing range"), Error);
  EXPECT_THROW(file->require(1, UINT64_MAX, "overflowing length"), Error);

  write_bytes(dir.file("empty"), {});
  auto empty = MappedFile::open(dir.file("empty"));
  EXPECT_EQ(empty->size(), 0u);
  EXPECT_THROW(empty->require(0, 1, "a byte"), Error);

  EXPECT_THROW(MappedFile::open(dir.file("missing")), Error);
  EXPECT_THROW(MappedFile::open(dir.path()), Error);  // a directory
}

// compressed-tensors stores shapes and row offsets as I64 and bitmasks as U8.
TEST(TensorData, IntegerTypesForCompressedTensors) {
  EXPECT_EQ(tensor_type_info(27u)->block_bytes, 8);  // ggml's I64 id
  EXPECT_EQ(tensor_type_name(TensorType::I64), "I64");
  EXPECT_EQ(tensor_type_info(TensorType::U8).block_bytes, 1);
  EXPECT_EQ(tensor_type_name(TensorType::U8), "U8");
  EXPECT_EQ(tensor_type_info(uint32_t(TensorType::U8)), nullptr);  // no ggml type: a GGUF file cannot claim it
  EXPECT_EQ(tensor_bytes(TensorType::I64, 3), 24u);
  EXPECT_EQ(tensor_bytes(TensorType::U8, 3), 3u);
  const std::vector<int64_t> longs = {0, -7, int64_t(1) << 40};
  std::vector<float> out(3);
  decode_to_f32(TensorType::I64, reinterpret_cast<const uint8_t*>(longs.data()), 3, out.data());
  EXPECT_EQ(out, (std::vector<float>{0.0f, -7.0f, 1099511627776.0f}));
  const std::vector<uint8_t> bytes = {0, 0x80, 0xff};
  decode_to_f32(TensorType::U8, bytes.data(), 3, out.data());
  EXPECT_EQ(out, (std::vector<float>{0.0f, 128.0f, 255.0f}));
}

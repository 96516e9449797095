#include <gtest/gtest.h>

#include "io_test_builders.h"
#include "llmpress/core/error.h"
#include "llmpress/core/half.h"
#include "llmpress/io/safetensors.h"
#include "test_util.h"

using namespace llmpress;
using namespace llmpress::test;
using nlohmann::json;

namespace {

SafetensorsBuilder small_file() {
  SafetensorsBuilder b;
  b.f32("a.weight", {2, 3}, {1, 2, 3, 4, 5, 6});
  std::vector<uint16_t> h = {f32_to_f16(0.5f), f32_to_f16(-2.0f)};
  std::vector<uint8_t> hb(4);
  std::memcpy(hb.data(), h.data(), 4);
  b.add("b.f16", "F16", {2}, hb);
  std::vector<uint16_t> bf = {f32_to_bf16(3.0f)};
  std::vector<uint8_t> bb(2);
  std::memcpy(bb.data(), bf.data(), 2);
  b.add("c.bf16", "BF16", {1, 1}, bb);
  return b;
}

// Writes `bytes`, reads it, and expects one Error starting with the path and containing `needle`.
void expect_read_error(const std::vector<uint8_t>& bytes, const std::string& needle) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  write_bytes(path, bytes);
  try {
    read_safetensors(path);
    ADD_FAILURE() << "no error; expected " << needle;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}

std::vector<uint8_t> with_header(const json& header, const std::vector<uint8_t>& data) {
  return SafetensorsBuilder::assemble(header.dump(), data);
}

}  // namespace

TEST(Safetensors, ReadsValidFile) {
  TempDir dir;
  write_bytes(dir.file("m.safetensors"), small_file().build());
  SafetensorsFile f = read_safetensors(dir.file("m.safetensors"));
  ASSERT_EQ(f.tensors.size(), 3u);
  EXPECT_EQ(f.metadata.at("format"), "pt");
  EXPECT_EQ(f.tensors[0].name, "a.weight");
  EXPECT_EQ(f.tensors[0].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.tensors[1].type, TensorType::F16);
  EXPECT_EQ(f.tensors[2].type, TensorType::BF16);
  float out[6];
  decode_to_f32(f.tensors[0].type, f.tensors[0].data, 6, out);
  EXPECT_EQ(out[5], 6.0f);
  decode_to_f32(f.tensors[1].type, f.tensors[1].data, 2, out);
  EXPECT_EQ(out[1], -2.0f);
  decode_to_f32(f.tensors[2].type, f.tensors[2].data, 1, out);
  EXPECT_EQ(out[0], 3.0f);
}

TEST(Safetensors, EveryTruncationIsAnError) {
  const std::vector<uint8_t> bytes = small_file().build();
  TempDir dir;
  const std::string path = dir.file("t.safetensors");
  for (size_t n = 0; n < bytes.size(); ++n) {
    write_bytes(path, bytes, n);
    EXPECT_THROW(read_safetensors(path), Error) << "prefix " << n;
  }
}

TEST(Safetensors, HostileHeaders) {
  const SafetensorsBuilder b = small_file();
  const std::vector<uint8_t> data = b.data();
  // Header length larger than the file, and absurd.
  Bytes big;
  big.u64(1000);
  big.raw("{}", 2);
  expect_read_error(big.b, "JSON header");
  Bytes huge;
  huge.u64(uint64_t(1) << 62);
  expect_read_error(huge.b, "exceeds");
  expect_read_error(SafetensorsBuilder::assemble("{\"a\": ", data), "not valid JSON");
  expect_read_error(SafetensorsBuilder::assemble("[1, 2]", data), "does not start with '{'");
  // A duplicated name.
  expect_read_error(SafetensorsBuilder::assemble(
                        R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                        R"( "x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                        std::vector<uint8_t>(8)),
                    "appears twice");

  json h = b.header();
  auto mutated = [&](const std::string& name, const char* key, json value) {
    json copy = h;
    copy[name][key] = value;
    return with_header(copy, data);
  };
  expect_read_error(mutated("a.weight", "dtype", "F99"), "unknown dtype");
  expect_read_error(mutated("a.weight", "dtype", "I16"), "does not read");
  expect_read_error(mutated("a.weight", "dtype", 5), "not a string");
  expect_read_error(mutated("a.weight", "shape", json{2, 2}), "need");             // byte count vs shape
  expect_read_error(mutated("a.weight", "shape", json{-2, 3}), "non-negative");
  expect_read_error(mutated("a.weight", "shape", json{int64_t(1) << 40, int64_t(1) << 40}), "too many");
  expect_read_error(mutated("a.weight", "data_offsets", json{0}), "[begin, end]");
  expect_read_error(mutated("a.weight", "data_offsets", json{24, 0}), "end before");
  expect_read_error(mutated("c.bf16", "data_offsets", json{100, 102}), "data buffer");   // out of range
  expect_read_error(mutated("c.bf16", "data_offsets", json{26, 28}), "overlaps");
  expect_read_error(mutated("b.f16", "data_offsets", json{20, 24}), "overlaps");
  json missing = h;
  missing["a.weight"].erase("dtype");
  expect_read_error(with_header(missing, data), "no \"dtype\"");
  json bad_meta = h;
  bad_meta["__metadata__"] = {{"format", 1}};
  expect_read_error(with_header(bad_meta, data), "__metadata__");
  // Trailing garbage after the last tensor, and a hole before a tensor.
  std::vector<uint8_t> longer = data;
  longer.push_back(0);
  expect_read_error(with_header(h, longer), "after the last tensor");
  json holed = h;
  holed["a.weight"]["data_offsets"] = {4, 28};
  holed["b.f16"]["data_offsets"] = {28, 32};
  holed["c.bf16"]["data_offsets"] = {32, 34};
  std::vector<uint8_t> shifted(4);
  shifted.insert(shifted.end(), data.begin(), data.end());
  expect_read_error(with_header(holed, shifted), "unused bytes");
}

TEST(Safetensors, ShardedIndex) {
  TempDir dir;
  SafetensorsBuilder one, two;
  one.f32("x", {2}, {1, 2});
  two.f32("y", {1}, {3});
  two.f32("z", {1}, {4});
  write_bytes(dir.file("model-00001-of-00002.safetensors"), one.build());
  write_bytes(dir.file("model-00002-of-00002.safetensors"), two.build());
  json index = {{"metadata", {{"total_size", 16}}},
                {"weight_map", {{"x", "model-00001-of-00002.safetensors"}, {"y", "model-00002-of-00002.safetensors"},
                                {"z", "model-00002-of-00002.safetensors"}}}};
  write_text(dir.file("model.safetensors.index.json"), index.dump());
  auto tensors = read_safetensors_index(dir.file("model.safetensors.index.json"));
  ASSERT_EQ(tensors.size(), 3u);
  float v;
  decode_to_f32(TensorType::F32, tensors.at("z").data, 1, &v);
  EXPECT_EQ(v, 4.0f);

  index["weight_map"]["w"] = "model-00001-of-00002.safetensors";  // not in that shard
  write_text(dir.file("model.safetensors.index.json"), index.dump());
  EXPECT_THROW(read_safetensors_index(dir.file("model.safetensors.index.json")), Error);
  index["weight_map"].erase("w");
  index["weight_map"]["x"] = "../elsewhere.safetensors";
  write_text(dir.file("model.safetensors.index.json"), index.dump());
  EXPECT_THROW(read_safetensors_index(dir.file("model.safetensors.index.json")), Error);
  index["weight_map"]["x"] = "model-00003-of-00002.safetensors";  // absent shard
  write_text(dir.file("model.safetensors.index.json"), index.dump());
  EXPECT_THROW(read_safetensors_index(dir.file("model.safetensors.index.json")), Error);
  write_text(dir.file("model.safetensors.index.json"), "{\"metadata\": {}}");
  EXPECT_THROW(read_safetensors_index(dir.file("model.safetensors.index.json")), Error);
  write_text(dir.file("model.safetensors.index.json"), "not json");
  EXPECT_THROW(read_safetensors_index(dir.file("model.safetensors.index.json")), Error);
}

TEST(Safetensors, GutenbergModel) {
  LLMPRESS_REQUIRE_SHARED("models/gutenberg-dev-llama-5m/model.safetensors");
  SafetensorsFile f = read_safetensors(shared_path("models/gutenberg-dev-llama-5m/model.safetensors"));
  int64_t total = 0;
  for (const RawTensor& t : f.tensors) {
    EXPECT_EQ(t.type, TensorType::F32);
    total += t.numel();
  }
  EXPECT_EQ(total, 4984064);
}

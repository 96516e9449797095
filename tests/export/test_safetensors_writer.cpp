#include "llmpress/export/safetensors_writer.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "export_test_util.h"
#include "llmpress/core/error.h"
#include "llmpress/io/hf_config.h"
#include "llmpress/io/safetensors.h"
#include "test_util.h"

namespace llmpress {
namespace {

using test::slurp;
namespace fs = std::filesystem;

TEST(SafetensorsWriter, LayoutFollowsTheReferenceSerializer) {
  test::TempDir dir;
  const std::vector<NamedTensor> tensors = {
      {"b.half", at::arange(6, at::kFloat).reshape({2, 3}).to(at::kHalf)},
      {"z.float", at::tensor({1.5f, -2.0f})},
      {"a.bf16", at::full({3}, 0.25, at::kBFloat16)},
      {"a.float", at::arange(4, at::kFloat).reshape({2, 2}).t()},  // not contiguous
      {"c.half", at::ones({1}, at::kHalf)},
  };
  write_safetensors(dir.file("m.safetensors"), tensors);
  const std::string bytes = slurp(dir.file("m.safetensors"));
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.front(), '{');
  EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));  // space padding only
  const nlohmann::json j = nlohmann::json::parse(header);
  EXPECT_EQ(j["__metadata__"], (nlohmann::json{{"format", "pt"}}));
  // dtype descending (F32 > BF16 > F16), then name; contiguous from 0.
  const std::vector<std::pair<std::string, uint64_t>> expected = {
      {"a.float", 16}, {"z.float", 8}, {"a.bf16", 6}, {"b.half", 12}, {"c.half", 2}};
  uint64_t offset = 0;
  for (const auto& [name, size] : expected) {
    EXPECT_EQ(j[name]["data_offsets"], (nlohmann::json{offset, offset + size})) << name;
    offset += size;
  }
  EXPECT_EQ(j["a.bf16"]["dtype"], "BF16");
  EXPECT_EQ(j["b.half"]["shape"], (nlohmann::json{2, 3}));
  EXPECT_EQ(bytes.size(), 8 + n + offset);
  float a_float[4];
  std::memcpy(a_float, bytes.data() + 8 + n, 16);
  EXPECT_EQ(a_float[1], 2.0f);  // transposed values were written in logical order

  // The io helper's reader accepts it and sees the same values.
  const SafetensorsFile back = read_safetensors(dir.file("m.safetensors"));
  ASSERT_EQ(back.tensors.size(), 5u);
  EXPECT_EQ(back.metadata.at("format"), "pt");

  EXPECT_THROW(write_safetensors(dir.file("bad.safetensors"), {{"i", at::ones({2}, at::kShort)}}), Error);
  EXPECT_FALSE(fs::exists(dir.file("bad.safetensors")));
}

// gutenberg-dev-llama-5m: read with the io helper's reader, write a Hugging Face folder (single
// file and sharded), read both back and compare tensors and config.
TEST(SafetensorsWriter, HfCheckpointRoundTripSingleAndSharded) {
  LLMPRESS_REQUIRE_SHARED("models/gutenberg-dev-llama-5m/model.safetensors");
  const std::string src = test::shared_path("models/gutenberg-dev-llama-5m");
  const Checkpoint checkpoint = open_checkpoint(src);
  const std::vector<NamedTensor> tensors = test::load_all(checkpoint);
  test::TempDir dir;
  const std::vector<std::string> tokenizer_files = {src + "/tokenizer.model", src + "/tokenizer_config.json"};

  write_hf_checkpoint(dir.file("single"), checkpoint.config, tensors, tokenizer_files);
  EXPECT_EQ(slurp(dir.file("single/tokenizer.model")), slurp(src + "/tokenizer.model"));
  EXPECT_FALSE(fs::exists(dir.file("single/model.safetensors.index.json")));
  // The original file was written by Python's safetensors; ours must match it byte for byte.
  EXPECT_EQ(slurp(dir.file("single/model.safetensors")) == slurp(src + "/model.safetensors"), true)
      << "model.safetensors differs from the reference serializer's output";

  HfCheckpointOptions sharded;
  sharded.max_shard_bytes = 4 << 20;
  sharded.dtype = at::kBFloat16;
  write_hf_checkpoint(dir.file("sharded"), checkpoint.config, tensors, tokenizer_files, sharded);
  EXPECT_TRUE(fs::exists(dir.file("sharded/model-00001-of-00006.safetensors")) ||
              fs::exists(dir.file("sharded/model.safetensors.index.json")));
  const nlohmann::json index = nlohmann::json::parse(slurp(dir.file("sharded/model.safetensors.index.json")));
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), uint64_t(checkpoint.config.parameter_count()) * 2);
  EXPECT_EQ(nlohmann::json::parse(slurp(dir.file("sharded/config.json")))["torch_dtype"], "bfloat16");

  for (const char* name : {"single", "sharded"}) {
    const Checkpoint back = open_checkpoint(dir.file(name));
    EXPECT_EQ(to_hf_config(back.config), to_hf_config(checkpoint.config)) << name;
    ASSERT_EQ(back.tensors.size(), checkpoint.tensors.size()) << name;
    for (const NamedTensor& t : tensors) {
      const at::Tensor expected = std::string(name) == "single" ? t.tensor : t.tensor.to(at::kBFloat16).to(at::kFloat);
      EXPECT_TRUE(at::equal(back.load(t.name), expected)) << name << " " << t.name;
    }
  }
  // Replacing an existing folder works and leaves no temporary folders behind.
  write_hf_checkpoint(dir.file("single"), checkpoint.config, tensors, {});
  EXPECT_FALSE(fs::exists(dir.file("single/tokenizer.model")));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 2);
}

// I64 and U8 (compressed-tensors' shapes, row offsets and bitmasks): placed where safetensors' dtype
// order puts them (I64 before F32, U8 after F16) and read back bit for bit.
TEST(SafetensorsWriter, IntegerDtypes) {
  test::TempDir dir;
  const at::Tensor longs = at::tensor(std::vector<int64_t>{3, -1, int64_t(1) << 50});
  const at::Tensor bytes = at::tensor(std::vector<uint8_t>{0x01, 0x80, 0xff, 0x00}).reshape({2, 2});
  write_safetensors(dir.file("m.safetensors"),
                    {{"m.bitmask", bytes}, {"m.half", at::ones({1}, at::kHalf)}, {"m.float", at::ones({1})},
                     {"m.shape", longs}});
  const std::string file = slurp(dir.file("m.safetensors"));
  uint64_t n = 0;
  std::memcpy(&n, file.data(), 8);
  const nlohmann::json j = nlohmann::json::parse(file.substr(8, n));
  EXPECT_EQ(j["m.shape"]["dtype"], "I64");
  EXPECT_EQ(j["m.shape"]["data_offsets"], (nlohmann::json{0, 24}));
  EXPECT_EQ(j["m.float"]["data_offsets"], (nlohmann::json{24, 28}));
  EXPECT_EQ(j["m.half"]["data_offsets"], (nlohmann::json{28, 30}));
  EXPECT_EQ(j["m.bitmask"]["dtype"], "U8");
  EXPECT_EQ(j["m.bitmask"]["shape"], (nlohmann::json{2, 2}));
  EXPECT_EQ(j["m.bitmask"]["data_offsets"], (nlohmann::json{30, 34}));

  const SafetensorsFile back = read_safetensors(dir.file("m.safetensors"));
  ASSERT_EQ(back.tensors.size(), 4u);
  for (const RawTensor& t : back.tensors) {
    if (t.name == "m.shape") {
      EXPECT_EQ(t.type, TensorType::I64);
      ASSERT_EQ(t.nbytes, 24u);
      EXPECT_EQ(std::memcmp(t.data, longs.data_ptr(), 24), 0);
    } else if (t.name == "m.bitmask") {
      EXPECT_EQ(t.type, TensorType::U8);
      ASSERT_EQ(t.nbytes, 4u);
      EXPECT_EQ(std::memcmp(t.data, bytes.data_ptr(), 4), 0);
    }
  }
}

}  // namespace
}  // namespace llmpress

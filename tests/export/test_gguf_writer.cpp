#include "llmpress/export/gguf_writer.h"

#include <cstring>
#include <set>

#include "export_test_util.h"
#include "llmpress/core/error.h"
#include "llmpress/io/gguf.h"
#include "llmpress/io/mapped_file.h"
#include "test_util.h"

namespace llmpress {
namespace {

const uint8_t* tensor_bytes_of(const GgufFile& f, const GgufTensorInfo& t) {
  return f.file->data() + f.data_start + t.offset;
}

const GgufTensorInfo* find_tensor(const GgufFile& f, const std::string& name) {
  for (const GgufTensorInfo& t : f.tensors)
    if (t.name == name) return &t;
  return nullptr;
}

TEST(GgufWriter, EveryValueTypeReadsBackWithItsType) {
  test::TempDir dir;
  GgufWriter w;
  w.set_u8("t.u8", 200);
  w.set_i8("t.i8", -5);
  w.set_u16("t.u16", 60000);
  w.set_i16("t.i16", -30000);
  w.set_u32("t.u32", 4000000000u);
  w.set_i32("t.i32", -7);
  w.set_u64("t.u64", 1ull << 40);
  w.set_i64("t.i64", -(1ll << 40));
  w.set_f32("t.f32", 1e-5f);
  w.set_f64("t.f64", 0.1);
  w.set_bool("t.bool", true);
  w.set_string("t.str", "h\xC3\xA9llo");
  w.set_array_i32("t.ai32", {1, -2, 3});
  w.set_array_f32("t.af32", {0.5f, -1.0f});
  w.set_array_string("t.astr", {"a", "", "\xE2\x96\x81the"});
  w.set_array_bool("t.abool", {true, false});
  w.set_array_u8("t.au8", {});
  EXPECT_THROW(w.set_u32("t.u32", 1), Error);  // duplicate key
  w.add_tensor_bytes("a", TensorType::F32, {3}, std::vector<uint8_t>(12, 1));   // 12 bytes -> padded to 32
  w.add_tensor_bytes("b", TensorType::Q8_0, {2, 64}, std::vector<uint8_t>(2 * 2 * 34, 2));
  w.add_tensor_bytes("c", TensorType::F16, {5, 1, 3}, std::vector<uint8_t>(30, 3));
  EXPECT_THROW(w.add_tensor_bytes(std::string(64, 'x'), TensorType::F32, {1}, {0, 0, 0, 0}), Error);
  EXPECT_THROW(w.add_tensor_bytes("q", TensorType::Q8_0, {48}, std::vector<uint8_t>(51)), Error);
  EXPECT_THROW(w.add_tensor_bytes("a", TensorType::F32, {1}, {0, 0, 0, 0}), Error);
  w.write(dir.file("t.gguf"));

  const GgufFile f = read_gguf(dir.file("t.gguf"));
  EXPECT_EQ(f.version, 3u);
  ASSERT_EQ(f.metadata.size(), 17u);
  EXPECT_EQ(f.find("t.u8")->type, GgufType::UINT8);
  EXPECT_EQ(f.find("t.u8")->int_value, 200);
  EXPECT_EQ(f.find("t.i16")->int_value, -30000);
  EXPECT_EQ(f.find("t.u32")->type, GgufType::UINT32);
  EXPECT_EQ(f.find("t.u32")->int_value, 4000000000ll);
  EXPECT_EQ(f.find("t.i64")->int_value, -(1ll << 40));
  EXPECT_EQ(f.find("t.f32")->type, GgufType::FLOAT32);
  EXPECT_EQ(float(f.find("t.f32")->float_value), 1e-5f);
  EXPECT_EQ(f.find("t.f64")->float_value, 0.1);
  EXPECT_EQ(f.find("t.bool")->type, GgufType::BOOL);
  EXPECT_EQ(f.find("t.bool")->int_value, 1);
  EXPECT_EQ(f.find("t.str")->string_value, "h\xC3\xA9llo");
  EXPECT_EQ(f.find("t.ai32")->array_type, GgufType::INT32);
  EXPECT_EQ(f.find("t.ai32")->ints, (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(f.find("t.af32")->array_type, GgufType::FLOAT32);
  EXPECT_EQ(f.find("t.astr")->strings, (std::vector<std::string>{"a", "", "\xE2\x96\x81the"}));
  EXPECT_EQ(f.find("t.abool")->array_type, GgufType::BOOL);
  EXPECT_EQ(f.find("t.au8")->array_size(), 0u);

  ASSERT_EQ(f.tensors.size(), 3u);
  EXPECT_EQ(f.data_start % 32, 0u);
  EXPECT_EQ(f.tensors[0].offset, 0u);
  EXPECT_EQ(f.tensors[1].offset, 32u);
  EXPECT_EQ(f.tensors[2].offset, 32u + 160u);  // 136 bytes padded to 160
  EXPECT_EQ(f.tensors[1].ne, (std::vector<uint64_t>{64, 2}));  // reversed PyTorch shape
  EXPECT_EQ(f.tensors[2].ne, (std::vector<uint64_t>{3, 1, 5}));
  EXPECT_EQ(f.tensors[1].ggml_type, 8u);
  EXPECT_EQ(tensor_bytes_of(f, f.tensors[2])[29], 3);
  EXPECT_EQ(f.file->size(), f.data_start + 32 + 160 + 32);  // final padding too
}

// Reads llama.cpp's own stories260K-F32.gguf with the io reader, writes it back with our writer and
// compares: every tensor's bytes must be identical (this checks the Q/K permutation round trip, names,
// ne order and F32 encoding), and keys present in both files must have the same type and value.
TEST(GgufWriter, Stories260KRoundTripIsByteExactPerTensor) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K-F32.gguf");
  const std::string original_path = test::shared_path("models/stories260K/stories260K-F32.gguf");
  const Checkpoint checkpoint = open_checkpoint(original_path);
  ASSERT_TRUE(checkpoint.vocab.has_value());
  test::TempDir dir;
  const std::string out = dir.file("rewritten.gguf");
  const auto choices =
      write_gguf_model(out, checkpoint.config, test::load_all(checkpoint), *checkpoint.vocab, TensorType::F32);
  for (const auto& c : choices) EXPECT_EQ(c.type, TensorType::F32) << c.gguf_name;

  const GgufFile original = read_gguf(original_path);
  const GgufFile ours = read_gguf(out);
  std::set<std::string> compared;
  for (const GgufTensorInfo& t : ours.tensors) {
    const GgufTensorInfo* ref = find_tensor(original, t.name);
    ASSERT_NE(ref, nullptr) << "we wrote " << t.name << ", llama.cpp did not";
    EXPECT_EQ(t.ne, ref->ne) << t.name;
    EXPECT_EQ(t.ggml_type, ref->ggml_type) << t.name;
    ASSERT_EQ(t.nbytes, ref->nbytes) << t.name;
    EXPECT_EQ(std::memcmp(tensor_bytes_of(ours, t), tensor_bytes_of(original, *ref), t.nbytes), 0)
        << t.name << " differs from llama.cpp's bytes";
    compared.insert(t.name);
  }
  for (const GgufTensorInfo& t : original.tensors)
    EXPECT_TRUE(compared.count(t.name) || t.name == "output.weight") << "missing " << t.name;

  int shared_keys = 0;
  for (const auto& [key, value] : ours.metadata) {
    const GgufValue* ref = original.find(key);
    if (!ref) {
      std::printf("  only in ours: %s = %s\n", key.c_str(), value.to_display_string().c_str());
      continue;
    }
    ++shared_keys;
    EXPECT_EQ(value.type, ref->type) << key;
    if (value.type == GgufType::ARRAY) {
      EXPECT_EQ(value.array_type, ref->array_type) << key;
      EXPECT_EQ(value.ints, ref->ints) << key;
      EXPECT_EQ(value.strings, ref->strings) << key;
      EXPECT_EQ(value.floats, ref->floats) << key;
    } else if (key != "general.name") {
      EXPECT_EQ(value.to_display_string(), ref->to_display_string()) << key;
    }
  }
  for (const auto& [key, value] : original.metadata)
    if (!ours.find(key)) std::printf("  only in llama.cpp's: %s = %s\n", key.c_str(), value.to_display_string().c_str());
  EXPECT_GE(shared_keys, 15);
}

TEST(GgufWriter, ModelWriterRefusesWhatItCannotWrite) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K-F32.gguf");
  const Checkpoint checkpoint = open_checkpoint(test::shared_path("models/stories260K/stories260K-F32.gguf"));
  test::TempDir dir;
  std::vector<NamedTensor> tensors = test::load_all(checkpoint);
  tensors.pop_back();
  EXPECT_THROW(write_gguf_model(dir.file("x.gguf"), checkpoint.config, tensors, *checkpoint.vocab, TensorType::F16),
               Error);
  ModelConfig config = checkpoint.config;
  config.architecture = "gemma";
  EXPECT_THROW(write_gguf_model(dir.file("x.gguf"), config, test::load_all(checkpoint), *checkpoint.vocab,
                                TensorType::F16),
               Error);
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf")));
}

TEST(GgufWriter, Q8_0FallsBackToF16ForRowsThatAreNotWholeBlocks) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K-F32.gguf");
  const Checkpoint checkpoint = open_checkpoint(test::shared_path("models/stories260K/stories260K-F32.gguf"));
  test::TempDir dir;
  const auto choices = write_gguf_model(dir.file("q8.gguf"), checkpoint.config, test::load_all(checkpoint),
                                        *checkpoint.vocab, TensorType::Q8_0, {"stories260K"});
  const GgufFile f = read_gguf(dir.file("q8.gguf"));
  EXPECT_EQ(f.find("general.quantization_version")->int_value, 2);
  EXPECT_EQ(f.find("general.file_type")->int_value, 7);
  EXPECT_EQ(f.find("general.name")->string_value, "stories260K");
  for (const GgufTensorInfo& t : f.tensors) {
    if (t.ne.size() == 1) {
      EXPECT_EQ(t.ggml_type, 0u) << t.name;
    } else if (t.ne[0] % 32 == 0) {
      EXPECT_EQ(t.ggml_type, 8u) << t.name;
    } else {
      EXPECT_EQ(t.ggml_type, 1u) << t.name;  // ffn_down rows are 172 wide
    }
  }
  bool noted = false;
  for (const auto& c : choices) noted = noted || !c.note.empty();
  EXPECT_TRUE(noted);
  // The reader (not ours) decodes what we quantized; values stay close to the original.
  const Checkpoint back = open_checkpoint(dir.file("q8.gguf"));
  for (const auto& [name, raw] : checkpoint.tensors) {
    if (!back.has(name)) continue;
    const at::Tensor a = checkpoint.load(name), b = back.load(name);
    EXPECT_LT((a - b).abs().max().item<float>(), a.abs().max().item<float>() / 100) << name;
  }
}

}  // namespace
}  // namespace llmpress

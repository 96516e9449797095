#include <gtest/gtest.h>

#include "io_test_builders.h"
#include "llmpress/core/error.h"
#include "llmpress/io/checkpoint.h"
#include "test_util.h"

using namespace llmpress;
using namespace llmpress::test;
using nlohmann::json;

namespace {

void write_hf_dir(const TempDir& dir, const TinyLlama& m, const std::string& skip = "") {
  write_text(dir.file("config.json"), m.hf_config().dump());
  SafetensorsBuilder st;
  for (const std::string& name : m.order)
    if (name != skip) st.f32(name, m.shapes.at(name), m.hf.at(name));
  write_bytes(dir.file("model.safetensors"), st.build());
}

void expect_open_error(const std::string& path, const std::string& needle) {
  try {
    open_checkpoint(path);
    ADD_FAILURE() << "no error; expected " << needle;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}

}  // namespace

TEST(Checkpoint, HuggingFaceDirectoryAndFilePaths) {
  TinyLlama m;
  m.build();
  TempDir dir;
  write_hf_dir(dir, m);
  for (const std::string& path : {dir.path(), dir.file("model.safetensors"), dir.file("config.json")}) {
    Checkpoint ck = open_checkpoint(path);
    EXPECT_EQ(ck.format, CheckpointFormat::HuggingFace);
    EXPECT_EQ(std::string(checkpoint_format_name(ck.format)), "huggingface");
    EXPECT_EQ(ck.config.num_kv_heads, 1);
    EXPECT_EQ(ck.tensors.size(), m.order.size());
    EXPECT_EQ(ck.tokenizer_file, "");
    for (const std::string& name : m.order) {
      at::Tensor t = ck.load(name);
      EXPECT_EQ(t.scalar_type(), at::kFloat);
      EXPECT_EQ(t.sizes().vec(), m.shapes.at(name));
      EXPECT_EQ(std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + t.numel()), m.hf.at(name)) << name;
    }
  }
  write_text(dir.file("tokenizer.json"), "{}");
  EXPECT_EQ(open_checkpoint(dir.path()).tokenizer_file, dir.file("tokenizer.json"));
  write_text(dir.file("tokenizer.model"), "x");
  EXPECT_EQ(open_checkpoint(dir.path()).tokenizer_file, dir.file("tokenizer.model"));
  OpenOptions options;
  options.tokenizer = "/elsewhere/tokenizer.json";
  EXPECT_EQ(open_checkpoint(dir.path(), options).tokenizer_file, "/elsewhere/tokenizer.json");
}

TEST(Checkpoint, ShardedHuggingFace) {
  TinyLlama m;
  m.build();
  TempDir dir;
  write_text(dir.file("config.json"), m.hf_config().dump());
  SafetensorsBuilder a, b;
  json weight_map = json::object();
  for (size_t i = 0; i < m.order.size(); ++i) {
    const std::string& name = m.order[i];
    const bool first = i < m.order.size() / 2;
    (first ? a : b).f32(name, m.shapes.at(name), m.hf.at(name));
    weight_map[name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  write_bytes(dir.file("model-00001-of-00002.safetensors"), a.build());
  write_bytes(dir.file("model-00002-of-00002.safetensors"), b.build());
  write_text(dir.file("model.safetensors.index.json"), json{{"metadata", json::object()}, {"weight_map", weight_map}}.dump());
  for (const std::string& path : {dir.path(), dir.file("model-00002-of-00002.safetensors")}) {
    Checkpoint ck = open_checkpoint(path);
    EXPECT_EQ(ck.tensors.size(), m.order.size());
    EXPECT_TRUE(at::equal(ck.load("lm_head.weight"),
                          at::from_blob(m.hf.at("lm_head.weight").data(), {m.vocab, m.dim}, at::kFloat)));
  }
}

TEST(Checkpoint, MissingAndMisshapedTensors) {
  TinyLlama m;
  m.build();
  {
    TempDir dir;
    write_hf_dir(dir, m, "model.layers.1.mlp.up_proj.weight");
    expect_open_error(dir.path(), "missing: model.layers.1.mlp.up_proj.weight");
  }
  {
    TempDir dir;
    write_hf_dir(dir, m);
    json config = m.hf_config();
    config["intermediate_size"] = 10;
    write_text(dir.file("config.json"), config.dump());
    expect_open_error(dir.path(), "has shape [8, 12] but the config needs [8, 10]");
  }
  {
    TempDir dir;
    write_hf_dir(dir, m);
    json config = m.hf_config();
    config["tie_word_embeddings"] = true;  // an extra lm_head is harmless
    write_text(dir.file("config.json"), config.dump());
    EXPECT_NO_THROW(open_checkpoint(dir.path()));
    config["num_hidden_layers"] = 3;
    write_text(dir.file("config.json"), config.dump());
    expect_open_error(dir.path(), "tensor(s) the config needs are missing");
  }
  {
    TempDir dir;
    write_text(dir.file("config.json"), m.hf_config().dump());
    expect_open_error(dir.path(), "no model.safetensors");
  }
  {
    TempDir dir;
    expect_open_error(dir.path(), "no config.json");
    expect_open_error(dir.file("nothing.gguf"), "does not exist");
  }
}

TEST(Checkpoint, ExpectedShapes) {
  ModelConfig c;
  c.vocab_size = 10; c.hidden_size = 8; c.intermediate_size = 16; c.num_layers = 2;
  c.num_heads = 4; c.num_kv_heads = 2; c.head_dim = 4;
  auto shapes = expected_tensor_shapes(c);
  EXPECT_EQ(shapes.size(), 3u + 2 * 9);
  EXPECT_EQ(shapes.at("model.layers.1.self_attn.k_proj.weight"), (std::vector<int64_t>{8, 8}));
  EXPECT_EQ(shapes.at("model.layers.0.mlp.down_proj.weight"), (std::vector<int64_t>{8, 16}));
  c.tie_word_embeddings = true;
  c.attention_bias = true;
  shapes = expected_tensor_shapes(c);
  EXPECT_EQ(shapes.size(), 2u + 2 * 12);
  EXPECT_EQ(shapes.count("lm_head.weight"), 0u);
  EXPECT_EQ(shapes.at("model.layers.0.self_attn.k_proj.bias"), (std::vector<int64_t>{8}));
  int64_t total = 0;
  for (const auto& [name, shape] : shapes) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    total += n;
  }
  EXPECT_EQ(total, c.parameter_count());
}

TEST(Checkpoint, UnpermuteMatchesRowFormula) {
  // rows = heads * D with D = 6; check HF row h*D + t*D/2 + j == stored row h*D + 2j + t directly.
  const int64_t heads = 3, d = 6, cols = 2;
  std::vector<float> stored(size_t(heads * d * cols));
  for (size_t i = 0; i < stored.size(); ++i) stored[i] = float(i);
  Checkpoint ck;
  ck.path = "mem";
  RawTensor t;
  t.name = "w";
  t.file = "mem";
  t.shape = {heads * d, cols};
  t.data = reinterpret_cast<const uint8_t*>(stored.data());
  t.nbytes = stored.size() * 4;
  t.unpermute_rope_heads = heads;
  ck.tensors["w"] = t;
  at::Tensor hf = ck.load("w");
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t tt = 0; tt < 2; ++tt)
      for (int64_t j = 0; j < d / 2; ++j)
        for (int64_t c = 0; c < cols; ++c)
          EXPECT_EQ(hf[h * d + tt * d / 2 + j][c].item<float>(), stored[size_t((h * d + 2 * j + tt) * cols + c)]);
  RawTensor bias = t;
  bias.shape = {heads * d};
  bias.nbytes = uint64_t(heads * d * 4);
  ck.tensors["b"] = bias;
  at::Tensor hb = ck.load("b");
  EXPECT_EQ(hb[d + d / 2 + 1].item<float>(), stored[size_t(d + 2 * 1 + 1)]);
  ck.tensors["w"].unpermute_rope_heads = 4;  // 18 rows do not split into 4 heads
  EXPECT_THROW(ck.load("w"), Error);
  EXPECT_THROW(ck.load("absent"), Error);
}

TEST(Checkpoint, Stories260KGgufEqualsLlama2c) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K-F32.gguf");
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  Checkpoint gguf = open_checkpoint(shared_path("models/stories260K/stories260K-F32.gguf"));
  Checkpoint bin = open_checkpoint(shared_path("models/stories260K/stories260K.bin"));
  EXPECT_EQ(bin.format, CheckpointFormat::Llama2c);
  size_t compared = 0;
  for (const auto& [name, raw] : gguf.tensors) {
    // The GGUF repeats the tied embedding as output.weight; the .bin shares it.
    const std::string other = name == "lm_head.weight" ? "model.embed_tokens.weight" : name;
    ASSERT_TRUE(bin.has(other)) << name;
    EXPECT_TRUE(at::equal(gguf.load(name), bin.load(other))) << name;
    ++compared;
  }
  EXPECT_EQ(compared, 3u + 5 * 9);
}

TEST(Checkpoint, GutenbergHuggingFace) {
  LLMPRESS_REQUIRE_SHARED("models/gutenberg-dev-llama-5m/model.safetensors");
  const std::string dir = shared_path("models/gutenberg-dev-llama-5m");
  Checkpoint ck = open_checkpoint(dir);
  EXPECT_EQ(ck.format, CheckpointFormat::HuggingFace);
  EXPECT_EQ(ck.config.parameter_count(), 4984064);
  EXPECT_EQ(ck.tokenizer_file, dir + "/tokenizer.model");
  int64_t total = 0;
  for (const auto& [name, raw] : ck.tensors) total += raw.numel();
  EXPECT_EQ(total, 4984064);
  at::Tensor q = ck.load("model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(q.sizes().vec(), (std::vector<int64_t>{256, 256}));
  EXPECT_TRUE(at::isfinite(q).all().item<bool>());
}

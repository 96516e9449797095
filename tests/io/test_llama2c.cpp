#include <gtest/gtest.h>

#include "io_test_builders.h"
#include "llmpress/core/error.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/io/llama2c.h"
#include "test_util.h"

using namespace llmpress;
using namespace llmpress::test;

namespace {

const int kSeqLen = 16;

std::vector<uint8_t> legacy_bytes(const TinyLlama& m) {
  Bytes b;
  for (int64_t v : {m.dim, m.hidden, m.layers, m.heads, m.kv_heads, m.tied ? m.vocab : -m.vocab, int64_t(kSeqLen)}) {
    b.i32(int32_t(v));
  }
  auto all_layers = [&](const std::string& rest) {
    for (int64_t l = 0; l < m.layers; ++l) b.floats(m.meta_layout(m.layer(l, rest)));
  };
  b.floats(m.hf.at("model.embed_tokens.weight"));
  all_layers("input_layernorm.weight");
  for (const char* w : {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                        "self_attn.o_proj.weight", "post_attention_layernorm.weight", "mlp.gate_proj.weight",
                        "mlp.down_proj.weight", "mlp.up_proj.weight"}) {
    all_layers(w);
  }
  b.floats(m.hf.at("model.norm.weight"));
  b.floats(std::vector<float>(size_t(kSeqLen * m.head_dim() / 2 * 2), 9.0f));  // freq_cis tables
  if (!m.tied) b.floats(m.hf.at("lm_head.weight"));
  return b.b;
}

std::vector<uint8_t> ak42_bytes(const TinyLlama& m, int version = 1) {
  Bytes b;
  b.u32(0x616b3432);
  b.i32(version);
  for (int64_t v : {m.dim, m.hidden, m.layers, m.heads, m.kv_heads, m.vocab, int64_t(kSeqLen)}) b.i32(int32_t(v));
  b.u8(m.tied ? 1 : 0);
  b.pad_to(256);
  auto all_layers = [&](const std::string& rest) {
    for (int64_t l = 0; l < m.layers; ++l) b.floats(m.meta_layout(m.layer(l, rest)));
  };
  all_layers("input_layernorm.weight");
  all_layers("post_attention_layernorm.weight");
  b.floats(m.hf.at("model.norm.weight"));
  b.floats(m.hf.at("model.embed_tokens.weight"));
  for (const char* w : {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                        "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.down_proj.weight",
                        "mlp.up_proj.weight"}) {
    all_layers(w);
  }
  if (!m.tied) b.floats(m.hf.at("lm_head.weight"));
  return b.b;
}

void expect_all_equal(const Checkpoint& ck, const TinyLlama& m) {
  EXPECT_EQ(ck.tensors.size(), m.order.size());
  for (const std::string& name : m.order) {
    at::Tensor t = ck.load(name);
    ASSERT_EQ(t.sizes().vec(), m.shapes.at(name)) << name;
    const std::vector<float>& expected = m.hf.at(name);
    for (size_t i = 0; i < expected.size(); ++i) ASSERT_EQ(t.data_ptr<float>()[i], expected[i]) << name << " " << i;
  }
}

void expect_error(const std::vector<uint8_t>& bytes, const std::string& needle) {
  TempDir dir;
  const std::string path = dir.file("model.bin");
  write_bytes(path, bytes);
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

TEST(Llama2c, LegacySharedAndSeparateClassifier) {
  for (bool tied : {true, false}) {
    TinyLlama m;
    m.tied = tied;
    m.build();
    TempDir dir;
    write_bytes(dir.file("model.bin"), legacy_bytes(m));
    Checkpoint ck = open_checkpoint(dir.file("model.bin"));
    EXPECT_EQ(ck.format, CheckpointFormat::Llama2c);
    EXPECT_EQ(ck.config.tie_word_embeddings, tied);
    EXPECT_EQ(ck.config.vocab_size, 6);
    EXPECT_EQ(ck.config.num_kv_heads, 1);
    EXPECT_EQ(ck.config.max_position_embeddings, kSeqLen);
    EXPECT_DOUBLE_EQ(ck.config.rms_norm_eps, 1e-5);
    EXPECT_DOUBLE_EQ(ck.config.rope_theta, 10000.0);
    EXPECT_EQ(ck.tokenizer_file, "");
    expect_all_equal(ck, m);
  }
}

TEST(Llama2c, VersionOneAk42) {
  for (bool tied : {true, false}) {
    TinyLlama m;
    m.tied = tied;
    m.build();
    TempDir dir;
    write_bytes(dir.file("model.bin"), ak42_bytes(m));
    Checkpoint ck = open_checkpoint(dir.file("model.bin"));
    EXPECT_EQ(ck.metadata.at("llama2c.version"), "1");
    EXPECT_EQ(ck.config.tie_word_embeddings, tied);
    expect_all_equal(ck, m);
  }
  TinyLlama m;
  m.build();
  expect_error(ak42_bytes(m, 2), "version 2 is not supported");
}

TEST(Llama2c, EveryTruncationAndExtraByteIsAnError) {
  TinyLlama m;
  m.layers = 1;
  m.build();
  const std::vector<uint8_t> bytes = legacy_bytes(m);
  TempDir dir;
  const std::string path = dir.file("model.bin");
  for (size_t n = 0; n < bytes.size(); ++n) {
    write_bytes(path, bytes, n);
    EXPECT_THROW(open_llama2c(path), Error) << "prefix " << n;
  }
  std::vector<uint8_t> longer = bytes;
  longer.push_back(0);
  expect_error(longer, "but the file has");
  const std::vector<uint8_t> v1 = ak42_bytes(m);
  for (size_t n = 0; n < v1.size(); n += 7) {
    write_bytes(path, v1, n);
    EXPECT_THROW(open_llama2c(path), Error) << "prefix " << n;
  }
}

TEST(Llama2c, AbsurdHeaders) {
  auto header = [](std::vector<int32_t> values) {
    Bytes b;
    for (int32_t v : values) b.i32(v);
    b.b.resize(4096);
    return b.b;
  };
  expect_error(header({0, 12, 1, 2, 1, 6, 16}), "dim = 0");
  expect_error(header({8, -12, 1, 2, 1, 6, 16}), "hidden_dim");
  expect_error(header({8, 12, 1, 3, 1, 6, 16}), "does not divide dim");
  expect_error(header({8, 12, 1, 4, 3, 6, 16}), "does not divide n_heads");
  expect_error(header({8, 12, 1, 2, 1, INT32_MIN, 16}), "vocab_size");
  expect_error(header({1 << 30, 12, 1, 2, 1, 6, 16}), "out of range");
  expect_error(header({8, 12, 1, 2, 1, 6, 16}), "but the file has 4096");
  expect_error({1, 2, 3}, "header");
}

TEST(Llama2c, TokenizerDiscovery) {
  TinyLlama m;
  m.build();
  TempDir dir;
  write_bytes(dir.file("model.bin"), legacy_bytes(m));
  write_bytes(dir.file("tok6.bin"), {0});
  EXPECT_EQ(open_checkpoint(dir.file("model.bin")).tokenizer_file, dir.file("tok6.bin"));
  write_bytes(dir.file("tok7.bin"), {0});  // ambiguous
  EXPECT_EQ(open_checkpoint(dir.file("model.bin")).tokenizer_file, "");
  write_bytes(dir.file("tokenizer.bin"), {0});
  EXPECT_EQ(open_checkpoint(dir.file("model.bin")).tokenizer_file, dir.file("tokenizer.bin"));
  OpenOptions options;
  options.tokenizer = "/somewhere/tok.bin";
  EXPECT_EQ(open_checkpoint(dir.file("model.bin"), options).tokenizer_file, "/somewhere/tok.bin");
}

TEST(Llama2c, Stories260K) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  Checkpoint ck = open_checkpoint(shared_path("models/stories260K/stories260K.bin"));
  EXPECT_EQ(ck.config.hidden_size, 64);
  EXPECT_EQ(ck.config.intermediate_size, 172);
  EXPECT_EQ(ck.config.num_layers, 5);
  EXPECT_EQ(ck.config.num_heads, 8);
  EXPECT_EQ(ck.config.num_kv_heads, 4);
  EXPECT_EQ(ck.config.vocab_size, 512);
  EXPECT_EQ(ck.config.max_position_embeddings, 512);
  EXPECT_TRUE(ck.config.tie_word_embeddings);
  EXPECT_EQ(ck.tokenizer_file, shared_path("models/stories260K/tok512.bin"));
}

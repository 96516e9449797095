#include <gtest/gtest.h>

#include <fstream>

#include "io_test_builders.h"
#include "llmpress/core/error.h"
#include "llmpress/io/hf_config.h"
#include "test_util.h"

using namespace llmpress;
using namespace llmpress::test;
using nlohmann::json;

namespace {

json llama2_7b() {
  return json::parse(R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000,
    "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 32, "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_scaling": null,
    "rope_theta": 10000.0, "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2,
    "torch_dtype": "float16"})");
}

// Expects an Error whose message starts with the source and mentions `needle`.
void expect_error(const json& config, const std::string& needle) {
  try {
    parse_hf_config(config, "cfg.json");
    ADD_FAILURE() << "no error for " << config.dump();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("cfg.json: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}

}  // namespace

TEST(HfConfig, Llama2) {
  ModelConfig c = parse_hf_config(llama2_7b(), "cfg");
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_kv_heads, 32);
  EXPECT_EQ(c.rope_scaling.type, "none");
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.parameter_count(), 6738415616);  // Llama-2-7B's published count
}

TEST(HfConfig, Llama3RopeScalingAndEosList) {
  json j = llama2_7b();
  j["vocab_size"] = 128256;
  j["num_key_value_heads"] = 8;
  j["intermediate_size"] = 14336;
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = {{"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}, {"rope_type", "llama3"}};
  j["bos_token_id"] = 128000;
  j["eos_token_id"] = {128001, 128008, 128009};
  ModelConfig c = parse_hf_config(j, "cfg");
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.eos_token_id, 128001);
  EXPECT_EQ(c.parameter_count(), 8030261248);  // Llama-3.1-8B
}

TEST(HfConfig, LinearScalingOldTypeKey) {
  json j = llama2_7b();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  ModelConfig c = parse_hf_config(j, "cfg");
  EXPECT_EQ(c.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 2.0);
}

TEST(HfConfig, TransformersV5RopeParameters) {
  json j = llama2_7b();
  j.erase("rope_theta");
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 32.0},
                          {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  ModelConfig c = parse_hf_config(j, "cfg");
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 32.0);
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}};
  c = parse_hf_config(j, "cfg");
  EXPECT_EQ(c.rope_scaling.type, "none");
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
}

TEST(HfConfig, MistralTinyLlamaSmolLM) {
  json mistral = json::parse(R"({"architectures": ["MistralForCausalLM"], "model_type": "mistral", "vocab_size": 32768,
    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 32768, "rms_norm_eps": 1e-05,
    "rope_theta": 1000000.0, "sliding_window": null, "tie_word_embeddings": false})");
  ModelConfig m = parse_hf_config(mistral, "cfg");
  EXPECT_EQ(m.architecture, "llama");
  EXPECT_EQ(m.num_kv_heads, 8);
  EXPECT_EQ(m.parameter_count(), 7248023552);  // Mistral-7B-v0.3

  json tiny = json::parse(R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000,
    "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
    "num_key_value_heads": 4, "max_position_embeddings": 2048, "rms_norm_eps": 1e-05, "rope_scaling": null,
    "tie_word_embeddings": false})");
  ModelConfig t = parse_hf_config(tiny, "cfg");
  EXPECT_EQ(t.head_dim, 64);
  EXPECT_EQ(t.parameter_count(), 1100048384);  // TinyLlama-1.1B

  json smol = json::parse(R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 49152,
    "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
    "num_key_value_heads": 3, "max_position_embeddings": 2048, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
    "tie_word_embeddings": true, "bos_token_id": 0, "eos_token_id": 0})");
  ModelConfig s = parse_hf_config(smol, "cfg");
  EXPECT_TRUE(s.tie_word_embeddings);
  EXPECT_EQ(s.head_dim, 64);
  EXPECT_EQ(s.bos_token_id, 0);
  EXPECT_EQ(s.parameter_count(), 134515008);  // SmolLM-135M
}

TEST(HfConfig, Qwen2) {
  json q = json::parse(R"({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 151936,
    "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "sliding_window": 32768, "use_sliding_window": false, "tie_word_embeddings": true,
    "bos_token_id": 151643, "eos_token_id": 151643})");
  ModelConfig c = parse_hf_config(q, "cfg");
  EXPECT_EQ(c.architecture, "qwen2");
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.parameter_count(), 494032768);  // Qwen2.5-0.5B
}

TEST(HfConfig, RoundTripThroughToHfConfig) {
  json j = llama2_7b();
  j["num_key_value_heads"] = 8;
  j["head_dim"] = 96;
  j["tie_word_embeddings"] = true;
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 2.0}, {"high_freq_factor", 5.0},
                       {"original_max_position_embeddings", 4096}};
  for (const json& input : {j, llama2_7b()}) {
    ModelConfig a = parse_hf_config(input, "a");
    json written = to_hf_config(a);
    EXPECT_FALSE(written.contains("rope_parameters"));
    EXPECT_TRUE(written.contains("rope_theta"));
    EXPECT_EQ(written["torch_dtype"], "float32");
    ModelConfig b = parse_hf_config(written, "b");
    EXPECT_EQ(to_hf_config(b), written);
    EXPECT_EQ(b.head_dim, a.head_dim);
    EXPECT_EQ(b.rope_scaling.type, a.rope_scaling.type);
    EXPECT_EQ(b.rope_scaling.original_max_position_embeddings, a.rope_scaling.original_max_position_embeddings);
    EXPECT_EQ(b.tie_word_embeddings, a.tie_word_embeddings);
    EXPECT_EQ(b.parameter_count(), a.parameter_count());
  }
  ModelConfig qwen;
  qwen.architecture = "qwen2";
  qwen.vocab_size = 10; qwen.hidden_size = 8; qwen.intermediate_size = 16; qwen.num_layers = 1;
  qwen.num_heads = 2; qwen.num_kv_heads = 1; qwen.head_dim = 4; qwen.attention_bias = true;
  ModelConfig back = parse_hf_config(to_hf_config(qwen), "q");
  EXPECT_EQ(back.architecture, "qwen2");
  EXPECT_TRUE(back.attention_bias);
}

TEST(HfConfig, AbsurdValuesAreErrors) {
  auto with = [](const char* key, json value) { json j = llama2_7b(); j[key] = value; return j; };
  expect_error(with("hidden_size", 0), "hidden_size");
  expect_error(with("num_hidden_layers", -3), "num_layers");
  expect_error(with("vocab_size", 0), "vocab_size");
  expect_error(with("intermediate_size", -1), "intermediate_size");
  expect_error(with("num_attention_heads", 0), "num_attention_heads");
  expect_error(with("num_attention_heads", 31), "does not divide hidden_size");
  expect_error(with("num_key_value_heads", 5), "does not divide num_heads");
  expect_error(with("num_key_value_heads", 0), "num_kv_heads");
  expect_error(with("head_dim", 127), "odd");
  expect_error(with("hidden_size", int64_t(1) << 40), "implausibly large");
  expect_error(with("hidden_size", "4096"), "must be an integer");
  expect_error(with("hidden_size", 4096.5), "must be an integer");
  // Found by fuzz_hf_config: a float beyond int64's range was cast before its range was checked (UB).
  expect_error(with("hidden_size", 2.5444444444444444e45), "must be an integer");
  expect_error(with("hidden_size", -1e300), "must be an integer");
  expect_error(with("rms_norm_eps", -1.0), "rms_norm_eps");
  expect_error(with("rope_theta", 0.0), "rope_theta");
  expect_error(with("model_type", "gemma"), "not supported");
  expect_error(with("rope_scaling", json{{"rope_type", "yarn"}, {"factor", 4.0}}), "yarn");
  expect_error(with("rope_scaling", json{{"rope_type", "linear"}}), "factor");
  expect_error(with("mlp_bias", true), "mlp_bias");
  expect_error(json::array(), "JSON object");
  // A config without sizes at all.
  expect_error(json{{"model_type", "llama"}, {"num_attention_heads", 4}}, "positive");
}

TEST(HfConfig, ReadFileErrors) {
  TempDir dir;
  write_text(dir.file("bad.json"), "{\"hidden_size\": 12,");
  try {
    read_hf_config(dir.file("bad.json"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(dir.file("bad.json") + ": ", 0), 0u) << e.what();
  }
  EXPECT_THROW(read_hf_config(dir.file("absent.json")), Error);
}

TEST(ModelConfig, GutenbergParameterCount) {
  LLMPRESS_REQUIRE_SHARED("models/gutenberg-dev-llama-5m/config.json");
  ModelConfig c = read_hf_config(shared_path("models/gutenberg-dev-llama-5m/config.json"));
  EXPECT_EQ(c.parameter_count(), 4984064);  // its README
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.num_kv_heads, 2);
}

// Regression (issue 13's mutation run): a value nested 100,000 deep or 100 KB long gives a one-line
// error that describes it, where printing it whole overflowed the stack.
TEST(HfConfig, DeepOrHugeValuesGiveAShortError) {
  test::TempDir dir;
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const std::string huge = "\"" + std::string(100000, 'x') + "\"";
  for (const std::string& value : {deep, huge}) {
    std::string text = llama2_7b().dump();
    text.replace(text.find("4096"), 4, value);  // hidden_size
    std::ofstream(dir.file("config.json")) << text;
    try {
      read_hf_config(dir.file("config.json"));
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("hidden_size must be an integer"), std::string::npos) << msg.substr(0, 200);
      EXPECT_LT(msg.size(), 300u);
    }
  }
}

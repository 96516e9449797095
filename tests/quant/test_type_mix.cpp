// choose_tensor_types against llama-quantize's rules (formats.md 2.5) on the two shared model shapes.
#include "llmpress/quant/type_mix.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "llmpress/core/error.h"
#include "test_util.h"

namespace llmpress {
namespace {

ModelConfig config_of(int64_t dim, int64_t ffn, int64_t layers, int64_t heads, int64_t kv_heads, int64_t vocab) {
  ModelConfig c;
  c.hidden_size = dim;
  c.intermediate_size = ffn;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.vocab_size = vocab;
  return c;
}

// GGUF tensors of a dense Llama in PyTorch shape order ([out, in]; rows are `in` long).
std::vector<TensorShape> llama_shapes(const ModelConfig& c, bool has_output) {
  const int64_t head_dim = c.hidden_size / c.num_heads, kv = c.num_kv_heads * head_dim;
  std::vector<TensorShape> t = {{"token_embd.weight", {c.vocab_size, c.hidden_size}},
                                {"output_norm.weight", {c.hidden_size}}};
  if (has_output) t.push_back({"output.weight", {c.vocab_size, c.hidden_size}});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    t.push_back({p + "attn_norm.weight", {c.hidden_size}});
    t.push_back({p + "attn_q.weight", {c.hidden_size, c.hidden_size}});
    t.push_back({p + "attn_k.weight", {kv, c.hidden_size}});
    t.push_back({p + "attn_v.weight", {kv, c.hidden_size}});
    t.push_back({p + "attn_output.weight", {c.hidden_size, c.hidden_size}});
    t.push_back({p + "ffn_norm.weight", {c.hidden_size}});
    t.push_back({p + "ffn_gate.weight", {c.intermediate_size, c.hidden_size}});
    t.push_back({p + "ffn_up.weight", {c.intermediate_size, c.hidden_size}});
    t.push_back({p + "ffn_down.weight", {c.hidden_size, c.intermediate_size}});
  }
  return t;
}

std::map<std::string, TensorTypeChoice> by_name(const std::vector<TensorTypeChoice>& v) {
  std::map<std::string, TensorTypeChoice> m;
  for (const TensorTypeChoice& c : v) m[c.name] = c;
  return m;
}

TEST(TypeMix, UseMoreBitsMatchesLlamaCppExample) {
  // formats.md 2.5: n = 32 -> layers 0-3, 28-31 and 6, 9, ..., 27.
  std::vector<int64_t> picked;
  for (int64_t i = 0; i < 32; ++i)
    if (use_more_bits(i, 32)) picked.push_back(i);
  EXPECT_EQ(picked, (std::vector<int64_t>{0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31}));
}

// gutenberg-dev-llama-5m: 6 layers, rows of 256 and 768 -> every k-type fits, no fallback.
const ModelConfig kGutenberg = config_of(256, 768, 6, 4, 2, 512);

TEST(TypeMix, GutenbergQ4_K_M) {
  const auto m = by_name(choose_tensor_types(kGutenberg, llama_shapes(kGutenberg, true), "Q4_K_M"));
  EXPECT_EQ(m.at("output.weight").type, TensorType::Q6_K);
  EXPECT_EQ(m.at("token_embd.weight").type, TensorType::Q4_K);
  EXPECT_EQ(m.at("output_norm.weight").type, TensorType::F32);
  for (int l = 0; l < 6; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const TensorType more = (l == 2 || l == 5) ? TensorType::Q6_K : TensorType::Q4_K;  // use_more_bits(l, 6)
    EXPECT_EQ(m.at(p + "attn_v.weight").type, more) << l;
    EXPECT_EQ(m.at(p + "ffn_down.weight").type, more) << l;
    for (const char* s : {"attn_q.weight", "attn_k.weight", "attn_output.weight", "ffn_gate.weight", "ffn_up.weight"})
      EXPECT_EQ(m.at(p + s).type, TensorType::Q4_K) << p << s;
    EXPECT_EQ(m.at(p + "attn_norm.weight").type, TensorType::F32);
  }
  for (const auto& [name, c] : m) EXPECT_FALSE(c.fallback) << name;
}

TEST(TypeMix, GutenbergOtherMixes) {
  const auto shapes = llama_shapes(kGutenberg, true);
  auto q3m = by_name(choose_tensor_types(kGutenberg, shapes, "q3_k_m"));
  EXPECT_EQ(q3m.at("blk.0.attn_v.weight").type, TensorType::Q5_K);
  EXPECT_EQ(q3m.at("blk.1.attn_v.weight").type, TensorType::Q5_K);
  EXPECT_EQ(q3m.at("blk.2.attn_v.weight").type, TensorType::Q4_K);
  EXPECT_EQ(q3m.at("blk.0.ffn_down.weight").type, TensorType::Q4_K);  // 0 < 6/16 is false
  EXPECT_EQ(q3m.at("blk.3.attn_output.weight").type, TensorType::Q4_K);
  EXPECT_EQ(q3m.at("blk.3.attn_q.weight").type, TensorType::Q3_K);
  EXPECT_EQ(q3m.at("output.weight").type, TensorType::Q6_K);

  auto q2 = by_name(choose_tensor_types(kGutenberg, shapes, "Q2_K"));
  EXPECT_EQ(q2.at("blk.4.attn_v.weight").type, TensorType::Q3_K);  // n_gqa = 2 < 4
  EXPECT_EQ(q2.at("blk.4.ffn_down.weight").type, TensorType::Q3_K);
  EXPECT_EQ(q2.at("blk.4.attn_output.weight").type, TensorType::Q3_K);
  EXPECT_EQ(q2.at("blk.4.ffn_up.weight").type, TensorType::Q2_K);
  EXPECT_EQ(q2.at("token_embd.weight").type, TensorType::Q2_K);

  auto q6 = by_name(choose_tensor_types(kGutenberg, shapes, "Q6_K"));
  for (const auto& [name, c] : q6)
    EXPECT_EQ(c.type, name.find("norm") != std::string::npos ? TensorType::F32 : TensorType::Q6_K) << name;

  auto q4s = by_name(choose_tensor_types(kGutenberg, shapes, "Q4_K_S"));
  EXPECT_EQ(q4s.at("blk.3.attn_v.weight").type, TensorType::Q5_K);  // first 4
  EXPECT_EQ(q4s.at("blk.4.attn_v.weight").type, TensorType::Q4_K);
  EXPECT_EQ(q4s.at("blk.0.ffn_down.weight").type, TensorType::Q4_K);  // 0 < 6/8 is false

  auto q5m = by_name(choose_tensor_types(kGutenberg, shapes, "Q5_K_M"));
  EXPECT_EQ(q5m.at("blk.5.ffn_down.weight").type, TensorType::Q6_K);
  EXPECT_EQ(q5m.at("blk.4.ffn_down.weight").type, TensorType::Q5_K);

  auto q40 = by_name(choose_tensor_types(kGutenberg, shapes, "Q4_0"));
  EXPECT_EQ(q40.at("output.weight").type, TensorType::Q6_K);  // llama-quantize also bumps output for legacy mixes
  EXPECT_EQ(q40.at("blk.0.ffn_down.weight").type, TensorType::Q4_0);
  auto q80 = by_name(choose_tensor_types(kGutenberg, shapes, "Q8_0"));
  EXPECT_EQ(q80.at("output.weight").type, TensorType::Q8_0);
  auto f16 = by_name(choose_tensor_types(kGutenberg, shapes, "F16"));
  EXPECT_EQ(f16.at("output.weight").type, TensorType::F16);
  EXPECT_EQ(f16.at("output_norm.weight").type, TensorType::F32);

  EXPECT_EQ(quant_mix("Q4_K_M").file_type, 15u);
  EXPECT_EQ(quant_mix("q2_k").file_type, 10u);
  EXPECT_THROW(quant_mix("Q7_K"), Error);
}

TEST(TypeMix, TiedEmbeddingsGetTheOutputRule) {
  const auto m = by_name(choose_tensor_types(kGutenberg, llama_shapes(kGutenberg, false), "Q4_K_M"));
  EXPECT_EQ(m.at("token_embd.weight").type, TensorType::Q6_K);
}

// stories260K: dim 64, ffn 172, 5 layers -> no row fits a 256 super-block; 172 not even 32.
const ModelConfig kStories = config_of(64, 172, 5, 8, 4, 512);

TEST(TypeMix, Stories260KFallsBackLikeLlamaQuantize) {
  const auto m = by_name(choose_tensor_types(kStories, llama_shapes(kStories, true), "Q4_K_M"));
  EXPECT_EQ(m.at("output.weight").type, TensorType::Q8_0);  // output rule: not a multiple of 256 -> Q8_0
  EXPECT_FALSE(m.at("output.weight").fallback);
  EXPECT_EQ(m.at("token_embd.weight").type, TensorType::Q5_0);  // Q4_K -> Q5_0
  EXPECT_TRUE(m.at("token_embd.weight").fallback);
  EXPECT_EQ(m.at("blk.1.attn_q.weight").type, TensorType::Q5_0);
  EXPECT_EQ(m.at("blk.2.attn_v.weight").type, TensorType::Q8_0);  // use_more_bits(2, 5): Q6_K -> Q8_0
  EXPECT_EQ(m.at("blk.4.attn_v.weight").type, TensorType::Q8_0);
  EXPECT_EQ(m.at("blk.0.attn_v.weight").type, TensorType::Q5_0);  // Q4_K -> Q5_0
  EXPECT_EQ(m.at("blk.1.ffn_down.weight").type, TensorType::F16);  // 172 is not a multiple of 32
  EXPECT_NE(m.at("blk.1.ffn_down.weight").note.find("172"), std::string::npos);

  const auto q5m = by_name(choose_tensor_types(kStories, llama_shapes(kStories, true), "Q5_K_M"));
  EXPECT_EQ(q5m.at("blk.1.attn_q.weight").type, TensorType::Q5_1);  // Q5_K -> Q5_1

  // Q2_K/Q3_K (and the i-quants) fall back to IQ4_NL, as in llama.cpp.
  const auto q3 = by_name(choose_tensor_types(kStories, llama_shapes(kStories, true), "Q3_K_S"));
  EXPECT_EQ(q3.at("blk.1.ffn_up.weight").type, TensorType::IQ4_NL);
  EXPECT_NE(q3.at("blk.1.ffn_up.weight").note.find("stored IQ4_NL"), std::string::npos);
}

TEST(TypeMix, OverridesWinAndStillFallBack) {
  const auto m = by_name(choose_tensor_types(kGutenberg, llama_shapes(kGutenberg, true), "Q4_K_M",
                                             {"attn_q=Q8_0", "ffn_.*=q5_k"}));
  EXPECT_EQ(m.at("blk.0.attn_q.weight").type, TensorType::Q8_0);
  EXPECT_EQ(m.at("blk.2.ffn_down.weight").type, TensorType::Q5_K);
  EXPECT_EQ(m.at("blk.2.attn_k.weight").type, TensorType::Q4_K);
  const auto s = by_name(choose_tensor_types(kStories, llama_shapes(kStories, true), "Q8_0", {"ffn_down=Q4_K"}));
  EXPECT_EQ(s.at("blk.0.ffn_down.weight").type, TensorType::F16);
  EXPECT_THROW(choose_tensor_types(kStories, llama_shapes(kStories, true), "Q8_0", {"ffn_down"}), Error);
  EXPECT_THROW(choose_tensor_types(kStories, llama_shapes(kStories, true), "Q8_0", {"x=Q9_9"}), Error);
}

// Every tensor's type as llama-quantize itself chose it (fixtures/llama_quantize_types.txt) for the i-quant,
// ternary and imatrix-dependent mixes, with and without an imatrix, on both shared model shapes.
TEST(TypeMix, EqualsLlamaQuantizesChoices) {
  std::ifstream in(std::filesystem::path(__FILE__).parent_path() / "fixtures" / "llama_quantize_types.txt");
  ASSERT_TRUE(in) << "fixtures/llama_quantize_types.txt is committed";
  std::string line;
  int cases = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string model, mix, imatrix, item;
    fields >> model >> mix >> imatrix;
    std::map<std::string, std::string> expected;
    std::string fallback_type;
    while (fields >> item) {
      const size_t eq = item.find('=');
      if (item.compare(0, eq, "default") == 0) fallback_type = item.substr(eq + 1);
      else expected[item.substr(0, eq) + ".weight"] = item.substr(eq + 1);
    }
    const ModelConfig& config = model == "g" ? kGutenberg : kStories;
    SCOPED_TRACE(line.substr(0, 20));
    for (const TensorTypeChoice& c : choose_tensor_types(config, llama_shapes(config, true), mix, {}, imatrix == "i")) {
      if (c.name.find("norm.weight") != std::string::npos) continue;
      const std::string want = expected.count(c.name) ? expected[c.name] : fallback_type;
      EXPECT_EQ(tensor_type_name(c.type), want) << c.name;
    }
    ++cases;
  }
  EXPECT_EQ(cases, 52);
}

TEST(TypeMix, LowBitMixesNeedImportanceAsInLlamaQuantize) {
  for (const char* mix : {"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS"})
    EXPECT_TRUE(mix_needs_importance(mix)) << mix;
  for (const char* mix : {"IQ3_XS", "IQ3_S", "IQ3_M", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "Q2_K", "Q4_K_M"})
    EXPECT_FALSE(mix_needs_importance(mix)) << mix;
  EXPECT_TRUE(mix_needs_importance("Q4_K_M", {"ffn_down=IQ2_S"}));
}

}  // namespace
}  // namespace llmpress

// The same random weights written as safetensors, GGUF F32 and llama2.c must give identical logits
// through each loader: this ties the three readers, the three writers and the RoPE layout
// conversions together (GGUF llama and llama2.c store q/k in Meta's interleaved order).
#include <gtest/gtest.h>

#include "llmpress/export/gguf_writer.h"
#include "llmpress/export/llama2c_writer.h"
#include "llmpress/export/safetensors_writer.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/model/transformer.h"
#include "test_util.h"

namespace llmpress {
namespace {

ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 128;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000;
  return c;
}

std::vector<NamedTensor> random_weights(const ModelConfig& c) {
  at::manual_seed(42);
  std::vector<NamedTensor> t;
  t.push_back({"model.embed_tokens.weight", at::randn({c.vocab_size, c.hidden_size})});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    t.push_back({p + "input_layernorm.weight", 1 + 0.1 * at::randn({c.hidden_size})});
    t.push_back({p + "post_attention_layernorm.weight", 1 + 0.1 * at::randn({c.hidden_size})});
    t.push_back({p + "self_attn.q_proj.weight", 0.3 * at::randn({c.num_heads * c.head_dim, c.hidden_size})});
    t.push_back({p + "self_attn.k_proj.weight", 0.3 * at::randn({c.num_kv_heads * c.head_dim, c.hidden_size})});
    t.push_back({p + "self_attn.v_proj.weight", 0.3 * at::randn({c.num_kv_heads * c.head_dim, c.hidden_size})});
    t.push_back({p + "self_attn.o_proj.weight", 0.3 * at::randn({c.hidden_size, c.num_heads * c.head_dim})});
    t.push_back({p + "mlp.gate_proj.weight", 0.3 * at::randn({c.intermediate_size, c.hidden_size})});
    t.push_back({p + "mlp.up_proj.weight", 0.3 * at::randn({c.intermediate_size, c.hidden_size})});
    t.push_back({p + "mlp.down_proj.weight", 0.3 * at::randn({c.hidden_size, c.intermediate_size})});
  }
  t.push_back({"model.norm.weight", 1 + 0.1 * at::randn({c.hidden_size})});
  t.push_back({"lm_head.weight", at::randn({c.vocab_size, c.hidden_size})});
  return t;
}

Vocab synthetic_vocab(int64_t size) {
  Vocab v;
  v.model = "llama";
  v.pre = "default";
  for (int64_t i = 0; i < size; ++i) {
    v.tokens.push_back(i == 0 ? "<unk>" : i == 1 ? "<s>" : i == 2 ? "</s>" : "t" + std::to_string(i));
    v.scores.push_back(-float(i));
    v.types.push_back(i == 0 ? 2 : i < 3 ? 3 : 1);
  }
  v.bos_id = 1;
  v.eos_id = 2;
  v.unk_id = 0;
  return v;
}

at::Tensor logits_of(const std::string& path, const at::Tensor& tokens) {
  return Transformer::load(open_checkpoint(path)).forward(tokens);
}

TEST(LoaderEquivalence, SafetensorsGgufAndLlama2cGiveIdenticalLogits) {
  const ModelConfig config = tiny_config();
  const std::vector<NamedTensor> weights = random_weights(config);
  test::TempDir dir;
  write_hf_checkpoint(dir.file("hf"), config, weights, {});
  write_gguf_model(dir.file("model.gguf"), config, weights, synthetic_vocab(config.vocab_size), TensorType::F32);
  write_llama2c(dir.file("model.bin"), config, weights);

  const at::Tensor tokens = at::randint(0, config.vocab_size, {2, 40}, at::kLong);
  const at::Tensor hf = logits_of(dir.file("hf"), tokens);
  const at::Tensor gguf = logits_of(dir.file("model.gguf"), tokens);
  const at::Tensor l2c = logits_of(dir.file("model.bin"), tokens);
  // Same float32 weights, same operations: the results must agree to the last bit.
  EXPECT_TRUE(at::equal(hf, gguf)) << (hf - gguf).abs().max().item<double>();
  EXPECT_TRUE(at::equal(hf, l2c)) << (hf - l2c).abs().max().item<double>();

  // And they are the logits of the weights we started from.
  std::map<std::string, at::Tensor> by_name;
  for (const NamedTensor& t : weights) by_name[t.name] = t.tensor;
  const Checkpoint reread = open_checkpoint(dir.file("model.gguf"));
  for (const auto& [name, tensor] : by_name)
    EXPECT_TRUE(at::equal(reread.load(name), tensor)) << name;
}

}  // namespace
}  // namespace llmpress

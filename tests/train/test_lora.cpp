// LoRA and QA-LoRA weights: a fresh adapter leaves the base's output exactly; the forward is the base plus
// (alpha / r) B A; QA-LoRA's pooled adapter equals its plain-LoRA export; the merge into Q4_1 / Q5_1 block
// mins keeps every code and moves each weight by at most the f16 rounding of its block's new min; the adapter
// files read back what was written (q/k rows through the GGUF's RoPE permutation), and bad files are refused.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "llmpress/core/error.h"
#include "llmpress/export/lora_adapter.h"
#include "llmpress/model/weight_kinds.h"
#include "llmpress/quant/ggml_block_header.h"
#include "llmpress/quant/ggml_codes.h"
#include "llmpress/quant/ggml_weight.h"
#include "llmpress/quant/rtn.h"
#include "llmpress/train/lora.h"
#include "test_util.h"

namespace llmpress {
namespace {

at::Tensor random_matrix(int64_t rows, int64_t cols, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::randn({rows, cols}, g, at::kFloat) * 0.05;
}

// An adapter whose B is no longer zero (as after training).
std::shared_ptr<LoraWeight> trained(std::shared_ptr<LinearWeight> base, LoraSpec spec, uint64_t seed) {
  auto lora = std::make_shared<LoraWeight>(std::move(base), spec);
  for (TrainableTensor& t : lora->trainable())
    if (t.suffix == "_lora_B") t.tensor.copy_(random_matrix(t.tensor.size(0), t.tensor.size(1), seed));
  return lora;
}

TEST(Lora, AFreshAdapterLeavesTheBaseOutputExactly) {
  const auto base = GgmlWeight::encode(random_matrix(64, 96, 1), TensorType::Q4_0);
  const LoraWeight lora(base, LoraSpec{4, 8, 0, 0, 7});
  const at::Tensor x = random_matrix(5, 96, 2);
  EXPECT_TRUE(at::equal(lora.forward(x), base->forward(x)));
  EXPECT_EQ(lora.trainable().size(), 2u);
}

TEST(Lora, ForwardIsBasePlusScaledProduct) {
  const auto base = std::make_shared<DenseWeight>(random_matrix(48, 64, 3));
  const auto lora = trained(base, LoraSpec{4, 8, 0, 0, 1}, 4);
  const at::Tensor x = random_matrix(6, 64, 5);
  const at::Tensor a = lora->plain_a(), b = lora->b();
  const at::Tensor expected = at::matmul(x, base->dense().t()) + at::matmul(at::matmul(x, a.t()), b.t()) * (8.0 / 4.0);
  EXPECT_TRUE(at::allclose(lora->forward(x), expected, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(lora->dense(), base->dense() + at::matmul(b, a) * 2.0, 1e-6, 1e-7));
}

TEST(Lora, QaLoraIsAPlainLoraWithAPooledA) {
  const auto base = GgmlWeight::encode(random_matrix(32, 128, 6), TensorType::Q4_1);
  const auto qa = trained(base, LoraSpec{4, 16, 0, 32, 2}, 7);
  const LoraWeight plain(base, qa->plain_a(), qa->b(), qa->alpha(), 0, 0);
  const at::Tensor x = random_matrix(3, 128, 8);
  EXPECT_TRUE(at::allclose(qa->forward(x), plain.forward(x), 1e-5, 1e-6));
  // The update is constant inside each group of 32 input columns.
  const at::Tensor u = qa->update().view({32, 4, 32});
  EXPECT_TRUE(at::equal(u, u.select(2, 0).unsqueeze(2).expand_as(u)));
}

TEST(Lora, QaLoraMergesIntoQ4_1AndQ5_1BlockMinsKeepingEveryCode) {
  for (TensorType type : {TensorType::Q4_1, TensorType::Q5_1}) {
    const auto base = GgmlWeight::encode(random_matrix(16, 256, 9), type);
    const auto qa = trained(base, LoraSpec{8, 16, 0, 64, 3}, 10);
    MergeCounts counts;
    const auto merged = std::dynamic_pointer_cast<GgmlWeight>(merged_weight(*qa, counts));
    ASSERT_TRUE(merged);
    EXPECT_EQ(counts.exact, 1);
    EXPECT_EQ(merged->type(), type);
    const TensorTypeInfo& info = tensor_type_info(type);
    const at::Tensor exact = qa->dense(), stored = merged->dense();
    const at::Tensor update = qa->update();
    for (int64_t r = 0; r < 16; ++r) {
      const uint8_t* before = base->bytes()[r].data_ptr<uint8_t>();
      const uint8_t* after = merged->bytes()[r].data_ptr<uint8_t>();
      for (int64_t k = 0; k < 256 / info.block_elements; ++k) {
        const uint8_t* bb = before + k * info.block_bytes;
        const uint8_t* ab = after + k * info.block_bytes;
        for (int e = 0; e < int(info.block_elements); ++e) ASSERT_EQ(read_block_code(type, bb, e), read_block_code(type, ab, e));
        const BlockHeader hb = read_block_header(type, bb), ha = read_block_header(type, ab);
        EXPECT_EQ(hb.d, ha.d);
        // The bound: the new min is the f16 nearest to min + update, so each weight of the block moves from the
        // unmerged value by at most half an f16 ulp of that sum (2^-11 relative; 2^-25 absolute near zero).
        const double target = double(hb.min) + update[r][k * info.block_elements].item<double>();
        const double bound = std::max(std::abs(target) * std::ldexp(1.0, -11), std::ldexp(1.0, -25));
        EXPECT_LE(std::abs(double(ha.min) - target), bound * (1 + 1e-6));
        const at::Tensor block_error =
            (stored[r].slice(0, k * info.block_elements, (k + 1) * info.block_elements) -
             exact[r].slice(0, k * info.block_elements, (k + 1) * info.block_elements)).abs().max();
        EXPECT_LE(block_error.item<double>(), bound + 1e-6 * std::abs(target) + 1e-7) << tensor_type_name(type);
      }
    }
  }
}

TEST(Lora, MergeReQuantizesOtherBasesOntoTheirOwnFormat) {
  MergeCounts counts;
  const auto q4k = trained(GgmlWeight::encode(random_matrix(8, 256, 11), TensorType::Q4_K), LoraSpec{2, 4, 0, 0, 1}, 12);
  const auto ggml = std::dynamic_pointer_cast<GgmlWeight>(merged_weight(*q4k, counts));
  ASSERT_TRUE(ggml);
  EXPECT_EQ(ggml->type(), TensorType::Q4_K);
  EXPECT_TRUE(at::equal(ggml->bytes(), GgmlWeight::encode(q4k->dense(), TensorType::Q4_K)->bytes()));
  IntGridSpec spec;
  spec.bits = 3;
  spec.group_size = 64;
  const auto grid = trained(rtn_quantize(random_matrix(8, 128, 13), spec), LoraSpec{2, 4, 0, 64, 1}, 14);
  const auto requantized = std::dynamic_pointer_cast<QuantizedWeight>(merged_weight(*grid, counts));
  ASSERT_TRUE(requantized);
  EXPECT_EQ(requantized->spec().bits, 3);
  const auto dense = trained(std::make_shared<DenseWeight>(random_matrix(8, 64, 15)), LoraSpec{2, 4, 0, 0, 1}, 16);
  EXPECT_TRUE(at::equal(merged_weight(*dense, counts)->dense(), dense->dense()));
  EXPECT_EQ(counts.exact, 0);
  EXPECT_EQ(counts.requantized, 2);
  EXPECT_EQ(counts.dense, 1);
}

TEST(Lora, SavesAndRestoresThroughTheWeightRegistry) {
  const auto lora = trained(GgmlWeight::encode(random_matrix(32, 64, 17), TensorType::Q8_0), LoraSpec{3, 6, 0.1, 32, 5}, 18);
  const auto restored = restore_weight(lora->save());
  ASSERT_EQ(restored->kind(), "lora");
  const auto& back = dynamic_cast<const LoraWeight&>(*restored);
  EXPECT_EQ(back.group(), 32);
  EXPECT_DOUBLE_EQ(back.dropout(), 0.1);
  EXPECT_TRUE(at::equal(back.dense(), lora->dense()));
  EXPECT_EQ(back.base()->kind(), "ggml");
}

TEST(Lora, BadSpecsAreRefused) {
  const auto base = std::make_shared<DenseWeight>(random_matrix(8, 48, 1));
  EXPECT_THROW(LoraWeight(base, LoraSpec{0, 8, 0, 0, 0}), Error);
  EXPECT_THROW(LoraWeight(base, LoraSpec{4, 8, 1.0, 0, 0}), Error);
  EXPECT_THROW(LoraWeight(base, LoraSpec{4, 8, 0, 32, 0}), Error);  // 32 does not divide 48
  EXPECT_THROW(LoraWeight(base, at::zeros({4, 47}), at::zeros({8, 4}), 8, 0, 0), Error);
}

// A small Llama config and an adapter on some of its linears, q/k included (the RoPE permutation).
ModelConfig tiny_config() {
  ModelConfig c;
  c.architecture = "llama";
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.vocab_size = 32;
  return c;
}

LoraAdapter tiny_adapter() {
  LoraAdapter a;
  a.alpha = 12;
  a.dropout = 0.05;
  a.base_model = "some/model";
  uint64_t seed = 20;
  for (const auto& [module, out, in] : std::vector<std::tuple<std::string, int64_t, int64_t>>{
           {"model.layers.0.self_attn.q_proj", 64, 64},
           {"model.layers.0.self_attn.k_proj", 32, 64},
           {"model.layers.1.mlp.down_proj", 64, 96}})
    a.tensors.push_back({module, random_matrix(4, in, seed++), random_matrix(out, 4, seed++)});
  return a;
}

void expect_same(const LoraAdapter& read, const LoraAdapter& written) {
  ASSERT_EQ(read.tensors.size(), written.tensors.size());
  EXPECT_DOUBLE_EQ(read.alpha, written.alpha);
  for (const LoraAdapterTensors& w : written.tensors) {
    bool found = false;
    for (const LoraAdapterTensors& r : read.tensors) {
      if (r.module != w.module) continue;
      found = true;
      EXPECT_TRUE(at::equal(r.a, w.a)) << w.module;
      EXPECT_TRUE(at::equal(r.b, w.b)) << w.module;
    }
    EXPECT_TRUE(found) << w.module;
  }
}

TEST(LoraAdapterFiles, PeftFolderAndGgufReadBackWhatWasWritten) {
  test::TempDir dir;
  const LoraAdapter adapter = tiny_adapter();
  write_peft_adapter(dir.file("peft"), tiny_config(), adapter);
  write_gguf_lora(dir.file("a.gguf"), tiny_config(), adapter);
  const LoraAdapter peft = read_lora_adapter(dir.file("peft"), tiny_config());
  expect_same(peft, adapter);
  EXPECT_DOUBLE_EQ(peft.dropout, 0.05);
  EXPECT_EQ(peft.base_model, "some/model");
  expect_same(read_lora_adapter(dir.file("a.gguf"), tiny_config()), adapter);
  // PEFT's names and config as PEFT writes them; modules that differ per layer are named by a regex.
  const std::string config = test::slurp(dir.file("peft/adapter_config.json"));
  EXPECT_NE(config.find("\"peft_type\": \"LORA\""), std::string::npos) << config;
  EXPECT_NE(config.find("\"r\": 4"), std::string::npos) << config;
  EXPECT_NE(config.find("model\\\\.layers\\\\.0\\\\.self_attn\\\\.q_proj"), std::string::npos) << config;
  const std::string weights = test::slurp(dir.file("peft/adapter_model.safetensors"));
  EXPECT_NE(weights.find("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"), std::string::npos);
  // Adapters on the same linears of every layer are named as PEFT's defaults name them; one layer alone is not.
  LoraAdapter uniform;
  for (int layer = 0; layer < 2; ++layer)
    for (const auto& [name, out] : {std::pair{"self_attn.q_proj", 64}, std::pair{"self_attn.v_proj", 32}})
      uniform.tensors.push_back({"model.layers." + std::to_string(layer) + "." + name, at::zeros({2, 64}), at::zeros({out, 2})});
  write_peft_adapter(dir.file("uniform"), tiny_config(), uniform);
  EXPECT_NE(test::slurp(dir.file("uniform/adapter_config.json")).find("\"target_modules\": [\n    \"q_proj\",\n    \"v_proj\"\n  ]"),
            std::string::npos) << test::slurp(dir.file("uniform/adapter_config.json"));
  uniform.tensors.resize(2);  // layer 0 only
  write_peft_adapter(dir.file("uniform"), tiny_config(), uniform);
  EXPECT_NE(test::slurp(dir.file("uniform/adapter_config.json")).find("model\\\\.layers\\\\.0"), std::string::npos);
  // A second write replaces our own folder.
  EXPECT_NO_THROW(write_peft_adapter(dir.file("peft"), tiny_config(), adapter));
}

TEST(LoraAdapterFiles, GgufStoresQAndKRowsInTheInterleavedRopeOrder) {
  test::TempDir dir;
  const LoraAdapter adapter = tiny_adapter();
  write_gguf_lora(dir.file("a.gguf"), tiny_config(), adapter);
  const std::string bytes = test::slurp(dir.file("a.gguf"));
  // llama.cpp's names, and the q_proj B rows of head 0: interleaved row 1 is half-split row D/2 = 8.
  EXPECT_NE(bytes.find("blk.0.attn_q.weight.lora_b"), std::string::npos);
  EXPECT_NE(bytes.find("blk.1.ffn_down.weight.lora_a"), std::string::npos);
  EXPECT_NE(bytes.find("adapter.lora.alpha"), std::string::npos);
  const at::Tensor b = adapter.tensors[0].b.contiguous();
  const auto row = [&](int64_t i) { return std::string(reinterpret_cast<const char*>(b[i].data_ptr<float>()), 16); };
  const size_t start = bytes.find(row(0));  // row 0 stays in place
  ASSERT_NE(start, std::string::npos);
  EXPECT_EQ(bytes.substr(start + 16, 16), row(8));
  EXPECT_EQ(bytes.substr(start + 32, 16), row(1));
}

TEST(LoraAdapterFiles, BadAdaptersGiveOneClearError) {
  test::TempDir dir;
  const LoraAdapter adapter = tiny_adapter();
  write_gguf_lora(dir.file("a.gguf"), tiny_config(), adapter);
  write_peft_adapter(dir.file("peft"), tiny_config(), adapter);
  const std::string good = test::slurp(dir.file("a.gguf"));
  const auto write = [&](const std::string& name, const std::string& content) {
    std::ofstream(dir.file(name), std::ios::binary) << content;
    return dir.file(name);
  };
  ModelConfig other = tiny_config();
  other.architecture = "qwen2";
  ModelConfig narrower = tiny_config();
  narrower.num_layers = 1;  // layer 1's adapter names no linear of this model
  const std::vector<std::pair<std::string, std::string>> cases = {
      {write("truncated.gguf", good.substr(0, good.size() / 2)), "truncated.gguf"},
      {write("empty.gguf", ""), "empty.gguf"},
      {dir.file("missing.gguf"), "no such adapter"},
  };
  for (const auto& [path, message] : cases) {
    try {
      read_lora_adapter(path, tiny_config());
      ADD_FAILURE() << path << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(read_lora_adapter(dir.file("a.gguf"), other), Error);
  EXPECT_THROW(read_lora_adapter(dir.file("a.gguf"), narrower), Error);
  EXPECT_THROW(read_lora_adapter(dir.file("peft"), narrower), Error);
  // A DoRA config, and one whose r disagrees with the tensors.
  const std::string config = test::slurp(dir.file("peft/adapter_config.json"));
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"\"use_dora\": false", "\"use_dora\": true"}, {"\"r\": 4", "\"r\": 8"}, {"\"peft_type\": \"LORA\"", "\"peft_type\": \"IA3\""}}) {
    std::string changed = config;
    changed.replace(changed.find(from), from.size(), to);
    std::ofstream(dir.file("peft/adapter_config.json")) << changed;
    EXPECT_THROW(read_lora_adapter(dir.file("peft"), tiny_config()), Error) << to;
  }
}

}  // namespace
}  // namespace llmpress

// Every weight kind saves itself and comes back identical through the one registry (resume files,
// stage outputs), including kinds held inside others (quantized factors, quantized pruned values);
// broken saved states and layer files fail with a clear error.
#include <gtest/gtest.h>

#include <fstream>

#include "llmpress/core/error.h"
#include "llmpress/io/tensor_file.h"
#include "llmpress/lowrank/low_rank_weight.h"
#include "llmpress/lowrank/tucker.h"
#include "llmpress/lowrank/tucker_weight.h"
#include "llmpress/model/layer_file.h"
#include "llmpress/model/sparse_weight.h"
#include "llmpress/prune/mask.h"
#include "llmpress/quant/ggml_weight.h"
#include "llmpress/quant/rtn.h"
#include "test_util.h"

namespace llmpress {
namespace {

at::Tensor random_matrix(int64_t out, int64_t in, uint64_t seed) {
  at::manual_seed(seed);
  return at::randn({out, in}, at::kFloat);
}

void expect_round_trip(const LinearWeight& weight) {
  const WeightState state = weight.save();
  EXPECT_EQ(state.kind, weight.kind());
  const std::shared_ptr<LinearWeight> back = restore_weight(state);
  EXPECT_EQ(back->kind(), weight.kind());
  EXPECT_EQ(back->storage_bits(), weight.storage_bits()) << weight.kind();
  EXPECT_EQ(back->parameter_count(), weight.parameter_count()) << weight.kind();
  EXPECT_TRUE(at::equal(back->dense(), weight.dense())) << weight.kind();
  const PruningMask a = weight.pruning_mask(), b = back->pruning_mask();
  EXPECT_EQ(a.removed.defined(), b.removed.defined());
  if (a.removed.defined()) {
    EXPECT_TRUE(at::equal(a.removed, b.removed));
    EXPECT_EQ(a.n, b.n);
    EXPECT_EQ(a.m, b.m);
  }
}

TEST(WeightKinds, EveryKindRoundTrips) {
  const at::Tensor w = random_matrix(64, 256, 1);
  IntGridSpec grid;
  grid.bits = 4;
  grid.group_size = 64;
  expect_round_trip(DenseWeight(w));
  expect_round_trip(*rtn_quantize(w, grid));
  expect_round_trip(*GgmlWeight::encode(w, TensorType::Q4_K));
  expect_round_trip(*GgmlWeight::encode(w, TensorType::Q8_0));
  // Low-rank with dense and with quantized factors.
  const at::Tensor u = random_matrix(64, 8, 2), v = random_matrix(8, 256, 3);
  expect_round_trip(LowRankWeight(u, v));
  expect_round_trip(LowRankWeight(rtn_quantize(u, grid), rtn_quantize(v, grid)));
  // Pruned: dense values, then the same mask with quantized values.
  const auto pruned = sparse_result(w.masked_fill(at::rand({64, 256}) < 0.5, 0.0), SparsityTarget::unstructured(0.5));
  expect_round_trip(*pruned);
  expect_round_trip(SparseWeight(rtn_quantize(pruned->dense(), grid), pruned->pruning_mask().removed));
  // Tucker of a 3-way view.
  TuckerOptions options;
  options.ranks = {4, 8, 32};
  options.max_iterations = 2;
  expect_round_trip(TuckerWeight(tucker_hooi(w.to(at::kDouble).reshape({4, 16, 256}), options), 64, 256, at::kCPU));
  for (const char* kind : {"dense", "sparse", "int", "ggml", "lowrank", "tucker", "cp"})
    EXPECT_NE(std::find(registered_weight_kinds().begin(), registered_weight_kinds().end(), kind),
              registered_weight_kinds().end())
        << kind;
}

TEST(WeightKinds, StorageBitsHaveOneMeaning) {
  const at::Tensor w = random_matrix(32, 64, 4);
  EXPECT_EQ(DenseWeight(w).storage_bits(), 32 * 64 * 16);  // fp16, whatever the dtype in memory
  EXPECT_EQ(DenseWeight(w.to(at::kDouble)).storage_bits(), 32 * 64 * 16);
  EXPECT_EQ(GgmlWeight::encode(w, TensorType::Q8_0)->storage_bits(), 32 * (64 / 32) * 34 * 8);
  const auto pruned = sparse_result(w.masked_fill(w.abs() < 0.6745, 0.0), SparsityTarget::unstructured(0.5));
  const int64_t kept = (pruned->dense() != 0).sum().item<int64_t>();
  EXPECT_EQ(pruned->storage_bits(), kept * 16 + 32 * 64);  // bitmask layout
}

TEST(WeightKinds, BrokenStatesAreClearErrors) {
  WeightState unknown{"hexagonal", nlohmann::json::object(), {}};
  try {
    restore_weight(unknown);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown kind 'hexagonal'"), std::string::npos) << e.what();
  }
  IntGridSpec grid;
  WeightState state = rtn_quantize(random_matrix(8, 128, 5), grid)->save();
  state.tensors.erase("scales");
  EXPECT_THROW(restore_weight(state), Error);
  state = rtn_quantize(random_matrix(8, 128, 5), grid)->save();
  state.meta.erase("bits");
  EXPECT_THROW(restore_weight(state), Error);
  state = GgmlWeight::encode(random_matrix(8, 256, 6), TensorType::Q4_K)->save();
  state.tensors["bytes"] = state.tensors["bytes"].narrow(1, 0, 10);
  EXPECT_THROW(restore_weight(state), Error);
}

TEST(WeightKinds, LayerFilesRoundTripAndTruncatedOnesAreRefused) {
  DecoderLayer layer;
  layer.input_norm = at::ones({64});
  layer.post_attention_norm = at::ones({64}) * 2;
  IntGridSpec grid;
  grid.group_size = 32;
  for (const std::string& name : DecoderLayer::linear_names()) {
    const at::Tensor w = random_matrix(64, 64, std::hash<std::string>{}(name));
    if (name == "mlp.up_proj") layer.linear(name).weight = GgmlWeight::encode(w, TensorType::Q8_0);
    else if (name == "mlp.down_proj") layer.linear(name).weight = std::make_shared<LowRankWeight>(w.narrow(1, 0, 4), w.narrow(0, 0, 4));
    else layer.linear(name).weight = rtn_quantize(w, grid);
  }
  layer.q_proj.bias = at::arange(64, at::kFloat);
  test::TempDir dir;
  const std::string path = dir.file("layer.bin");
  save_layer_file(path, layer);
  const DecoderLayer back = load_layer_file(path, at::kCPU);
  for (const std::string& name : DecoderLayer::linear_names()) {
    EXPECT_EQ(back.linear(name).weight->kind(), layer.linear(name).weight->kind()) << name;
    EXPECT_TRUE(at::equal(back.linear(name).weight->dense(), layer.linear(name).weight->dense())) << name;
  }
  EXPECT_TRUE(at::equal(back.q_proj.bias, layer.q_proj.bias));
  EXPECT_TRUE(at::equal(back.post_attention_norm, layer.post_attention_norm));

  // Every truncation is one clear error naming the file, never a crash.
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t cut : {size_t(0), size_t(4), size_t(12), bytes.size() / 3, bytes.size() - 1}) {
    const std::string broken = dir.file("cut.bin");
    std::ofstream(broken, std::ios::binary).write(bytes.data(), std::streamsize(cut));
    try {
      load_layer_file(broken, at::kCPU);
      ADD_FAILURE() << "a file cut at " << cut << " loaded";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(broken), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace llmpress

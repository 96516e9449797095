// Structured pruning: a shrunk model computes exactly what the original computes with the same
// units zeroed (heads: their o_proj columns; channels: their down_proj columns; layers: their
// o_proj and down_proj), the units removed are the lowest-scoring ones, and the smaller model
// reloads from the Hugging Face folder and the GGUF file it was written to with the same logits.
#include <gtest/gtest.h>

#include "calib/calib_test_util.h"
#include "llmpress/core/error.h"
#include "llmpress/export/gguf_writer.h"
#include "llmpress/export/safetensors_writer.h"
#include "llmpress/export/transformer_tensors.h"
#include "llmpress/model/transformer.h"
#include "llmpress/prune/layer_removal.h"
#include "llmpress/prune/structure_stats.h"
#include "llmpress/prune/width_pruning.h"

namespace llmpress {
namespace {

// Same model, every weight copied (so zeroing touches only the copy).
Transformer deep_copy(const Transformer& model) {
  Transformer copy = model;
  for (DecoderLayer& layer : copy.layers)
    for (const std::string& name : DecoderLayer::linear_names())
      layer.linear(name).weight = std::make_shared<DenseWeight>(layer.linear(name).weight->dense().clone());
  return copy;
}

void zero_columns(Linear& linear, const at::Tensor& columns) {
  at::Tensor w = linear.weight->dense().clone();
  w.index_fill_(1, columns, 0.0);
  linear.weight = std::make_shared<DenseWeight>(w);
}

// Indices in [0, n) that are not in `kept`.
at::Tensor complement(const at::Tensor& kept, int64_t n) {
  at::Tensor mask = at::ones({n}, at::kBool);
  mask.index_fill_(0, kept, false);
  return at::nonzero(mask).reshape({-1});
}

at::Tensor head_columns(const at::Tensor& heads, int64_t head_dim) {
  return (heads.unsqueeze(1) * head_dim + at::arange(head_dim).unsqueeze(0)).reshape({-1});
}

void expect_same_logits(const Transformer& a, const Transformer& b, const at::Tensor& tokens, double tol = 1e-4) {
  const at::Tensor la = a.forward(tokens), lb = b.forward(tokens);
  ASSERT_EQ(la.sizes(), lb.sizes());
  EXPECT_LT((la - lb).abs().max().item<double>(), tol);
}

struct Stories {
  Checkpoint checkpoint;
  Transformer model;
  at::Tensor tokens;
  std::vector<LayerStructureStats> stats;
};

Stories load_stories() {
  Stories s{open_checkpoint(test::shared_path(test::kStoriesModel)), {}, {}, {}};
  s.model = Transformer::load(s.checkpoint);
  s.tokens = test::stories_calibration(s.checkpoint, 4, 64);
  s.stats = collect_structure_stats(s.model, s.tokens, 2, false);
  return s;
}

TEST(PruneStructured, ChannelsEqualZeroedChannelsAndLowestScoresGo) {
  LLMPRESS_REQUIRE_SHARED(test::kStoriesModel);
  LLMPRESS_REQUIRE_SHARED(test::kStoriesCalib);
  const Stories s = load_stories();
  Transformer shrunk = deep_copy(s.model), zeroed = deep_copy(s.model);
  const int64_t intermediate = s.model.config.intermediate_size;
  std::vector<at::Tensor> kept;
  for (size_t i = 0; i < s.model.layers.size(); ++i)
    kept.push_back(mlp_channels_to_keep(s.model.layers[i], s.stats[i], 43));
  EXPECT_EQ(prune_mlp_channels(shrunk, s.stats, 0.25), 43);
  EXPECT_EQ(shrunk.config.intermediate_size, intermediate - 43);
  for (size_t i = 0; i < s.model.layers.size(); ++i) {
    const at::Tensor removed = complement(kept[i], intermediate);
    zero_columns(zeroed.layers[i].down_proj, removed);
    const at::Tensor scores = fluctuation_scores(s.model.layers[i].down_proj.weight->dense(), s.stats[i].mlp);
    EXPECT_LE(scores.index_select(0, removed).max().item<double>(), scores.index_select(0, kept[i]).min().item<double>());
    EXPECT_EQ(shrunk.layers[i].down_proj.weight->in_features(), intermediate - 43);
  }
  expect_same_logits(shrunk, zeroed, s.tokens);
}

TEST(PruneStructured, WholeKvGroupsEqualZeroedHeads) {
  LLMPRESS_REQUIRE_SHARED(test::kStoriesModel);
  LLMPRESS_REQUIRE_SHARED(test::kStoriesCalib);
  const Stories s = load_stories();
  const ModelConfig& c = s.model.config;  // 8 heads, 4 kv heads: groups of 2
  Transformer shrunk = deep_copy(s.model), zeroed = deep_copy(s.model);
  const HeadRemovalPlan plan = plan_head_removal(c, 4);
  EXPECT_EQ(plan.groups_removed, 2);
  for (size_t i = 0; i < s.model.layers.size(); ++i) {
    const HeadSelection keep = heads_to_keep(s.model.layers[i], c, s.stats[i], plan);
    EXPECT_EQ(keep.query_heads.size(0), 4);
    EXPECT_EQ(keep.kv_heads.size(0), 2);
    // Each kept kv head keeps both of its query heads.
    EXPECT_TRUE(at::equal(at::div(keep.query_heads, 2, "floor"), keep.kv_heads.repeat_interleave(2)));
    zero_columns(zeroed.layers[i].o_proj, head_columns(complement(keep.query_heads, c.num_heads), c.head_dim));
  }
  EXPECT_EQ(prune_attention_heads(shrunk, s.stats, 0.5), 4);
  EXPECT_EQ(shrunk.config.num_heads, 4);
  EXPECT_EQ(shrunk.config.num_kv_heads, 2);
  expect_same_logits(shrunk, zeroed, s.tokens);
  // Statistics of the unshrunk model do not fit the shrunk one.
  EXPECT_THROW(prune_attention_heads(shrunk, s.stats, 0.1), Error);
}

TEST(PruneStructured, LayersEqualIdentityLayersAndReloadFromFiles) {
  LLMPRESS_REQUIRE_SHARED(test::kStoriesModel);
  LLMPRESS_REQUIRE_SHARED(test::kStoriesCalib);
  const Stories s = load_stories();
  const std::vector<int64_t> removed = least_influential_layers(s.stats, 2);
  ASSERT_EQ(removed.size(), 2u);
  for (size_t i = 0; i < s.stats.size(); ++i) {
    const bool gone = std::find(removed.begin(), removed.end(), int64_t(i)) != removed.end();
    for (int64_t r : removed)
      if (!gone) EXPECT_GE(s.stats[i].block_influence, s.stats[size_t(r)].block_influence);
  }
  Transformer shrunk = deep_copy(s.model), zeroed = deep_copy(s.model);
  for (int64_t r : removed) {
    // A layer whose o_proj and down_proj write nothing passes its input through unchanged.
    zero_columns(zeroed.layers[size_t(r)].o_proj, at::arange(s.model.config.num_heads * s.model.config.head_dim));
    zero_columns(zeroed.layers[size_t(r)].down_proj, at::arange(s.model.config.intermediate_size));
  }
  remove_layers(shrunk, removed);
  EXPECT_EQ(shrunk.config.num_layers, s.model.config.num_layers - 2);
  expect_same_logits(shrunk, zeroed, s.tokens);

  // Heads and channels too, then the written files reload with identical logits.
  prune_mlp_channels(shrunk, collect_structure_stats(shrunk, s.tokens, 2, false), 0.3);
  prune_attention_heads(shrunk, collect_structure_stats(shrunk, s.tokens, 2, false), 0.25);
  EXPECT_EQ(shrunk.config.num_heads, 6);
  test::TempDir dir;
  write_hf_checkpoint(dir.file("hf"), shrunk.config, transformer_tensors(shrunk), {});
  const Checkpoint hf = open_checkpoint(dir.file("hf"));
  EXPECT_EQ(hf.config.num_layers, 3);
  EXPECT_EQ(hf.config.intermediate_size, 172 - 52);
  EXPECT_EQ(hf.config.num_kv_heads, 3);
  EXPECT_TRUE(at::equal(Transformer::load(hf).forward(s.tokens), shrunk.forward(s.tokens)));

  write_gguf_model(dir.file("m.gguf"), shrunk.config, transformer_tensors(shrunk),
                   load_tokenizer(s.checkpoint)->to_vocab(), TensorType::F32);
  const Checkpoint gguf = open_checkpoint(dir.file("m.gguf"));
  expect_same_logits(Transformer::load(gguf), shrunk, s.tokens, 1e-5);
}

// Grouped-query layouts where whole groups do not fit: the same number of query heads per group.
TEST(PruneStructured, SameNumberOfQueryHeadsFromEveryGroup) {
  ModelConfig c;
  c.vocab_size = 32;
  c.hidden_size = 24;
  c.intermediate_size = 20;
  c.num_layers = 2;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.max_position_embeddings = 32;
  at::manual_seed(31);
  auto linear = [](int64_t out, int64_t in) {
    Linear l;
    l.weight = std::make_shared<DenseWeight>(at::randn({out, in}) * 0.3);
    return l;
  };
  Transformer m;
  m.config = c;
  m.embed_tokens = at::randn({c.vocab_size, c.hidden_size});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    DecoderLayer layer;
    layer.input_norm = at::ones({c.hidden_size});
    layer.post_attention_norm = at::ones({c.hidden_size});
    layer.q_proj = linear(c.num_heads * c.head_dim, c.hidden_size);
    layer.k_proj = linear(c.num_kv_heads * c.head_dim, c.hidden_size);
    layer.v_proj = linear(c.num_kv_heads * c.head_dim, c.hidden_size);
    layer.o_proj = linear(c.hidden_size, c.num_heads * c.head_dim);
    layer.gate_proj = linear(c.intermediate_size, c.hidden_size);
    layer.up_proj = linear(c.intermediate_size, c.hidden_size);
    layer.down_proj = linear(c.hidden_size, c.intermediate_size);
    m.layers.push_back(layer);
  }
  m.norm = at::ones({c.hidden_size});
  m.lm_head.weight = std::make_shared<DenseWeight>(at::randn({c.vocab_size, c.hidden_size}));
  m.rope = Rope(c, at::kCPU);

  const at::Tensor tokens = at::randint(0, 32, {3, 12}, at::kLong);
  const auto stats = collect_structure_stats(m, tokens, 2, false);
  const HeadRemovalPlan plan = plan_head_removal(c, 2);  // groups of 4: one query head from each
  EXPECT_EQ(plan.groups_removed, 0);
  EXPECT_EQ(plan.heads_removed_per_group, 1);
  EXPECT_THROW(plan_head_removal(c, 3), Error);
  Transformer shrunk = deep_copy(m), zeroed = deep_copy(m);
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const HeadSelection keep = heads_to_keep(m.layers[i], c, stats[i], plan);
    EXPECT_EQ(keep.kv_heads.size(0), 2);
    EXPECT_TRUE(at::equal(at::div(keep.query_heads, 4, "floor").bincount(), at::full({2}, 3, at::kLong)));
    zero_columns(zeroed.layers[i].o_proj, head_columns(complement(keep.query_heads, 8), 4));
  }
  EXPECT_EQ(prune_attention_heads(shrunk, stats, 0.25), 2);
  EXPECT_EQ(shrunk.config.num_heads, 6);
  EXPECT_EQ(shrunk.config.num_kv_heads, 2);
  expect_same_logits(shrunk, zeroed, tokens, 1e-5);
}

}  // namespace
}  // namespace llmpress

// The decoder forward pass against a straightforward loop implementation of the same math
// (Hugging Face Llama/Qwen2 semantics), written here independently of src/.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "llmpress/core/error.h"
#include "llmpress/model/transformer.h"

namespace llmpress {
namespace {

using Matrix = std::vector<std::vector<double>>;  // [rows][cols]

Matrix to_matrix(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kDouble).contiguous();
  Matrix m(size_t(c.size(0)), std::vector<double>(size_t(c.size(1))));
  for (int64_t i = 0; i < c.size(0); ++i)
    for (int64_t j = 0; j < c.size(1); ++j) m[i][j] = c[i][j].item<double>();
  return m;
}
std::vector<double> to_vector(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}
std::vector<double> matvec(const Matrix& w, const std::vector<double>& x) {
  std::vector<double> y(w.size(), 0.0);
  for (size_t i = 0; i < w.size(); ++i)
    for (size_t j = 0; j < x.size(); ++j) y[i] += w[i][j] * x[j];
  return y;
}
std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<double>& w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double scale = 1.0 / std::sqrt(ss / double(x.size()) + eps);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * scale * w[i];
  return y;
}

// Per-frequency inverse wavelengths, with Hugging Face's llama3 rule when configured.
std::vector<double> reference_inv_freq(const ModelConfig& c) {
  std::vector<double> f(size_t(c.head_dim / 2));
  for (size_t i = 0; i < f.size(); ++i) {
    f[i] = 1.0 / std::pow(c.rope_theta, double(2 * i) / double(c.head_dim));
    if (c.rope_scaling.type == "llama3") {
      const double L = double(c.rope_scaling.original_max_position_embeddings);
      const double wavelen = 2 * M_PI / f[i];
      const double lo = c.rope_scaling.low_freq_factor, hi = c.rope_scaling.high_freq_factor;
      if (wavelen > L / lo) {
        f[i] = f[i] / c.rope_scaling.factor;
      } else if (wavelen >= L / hi) {
        const double smooth = (L / wavelen - lo) / (hi - lo);
        f[i] = (1 - smooth) * f[i] / c.rope_scaling.factor + smooth * f[i];
      }
    }
  }
  return f;
}

// HF rotate_half: element i pairs with i + D/2.
void rope_in_place(std::vector<double>& head, int64_t pos, const std::vector<double>& inv_freq) {
  const size_t half = head.size() / 2;
  for (size_t i = 0; i < half; ++i) {
    const double a = double(pos) * inv_freq[i];
    const double x0 = head[i], x1 = head[i + half];
    head[i] = x0 * std::cos(a) - x1 * std::sin(a);
    head[i + half] = x1 * std::cos(a) + x0 * std::sin(a);
  }
}

// Logits [T][vocab] of one sequence, computed with plain loops.
Matrix reference_forward(const Transformer& m, const std::vector<int64_t>& tokens) {
  const ModelConfig& c = m.config;
  const int64_t T = int64_t(tokens.size()), D = c.head_dim, H = c.num_heads, KV = c.num_kv_heads;
  const Matrix embed = to_matrix(m.embed_tokens);
  std::vector<std::vector<double>> x;
  for (int64_t t : tokens) x.push_back(embed[size_t(t)]);
  const std::vector<double> inv_freq = reference_inv_freq(c);
  for (const DecoderLayer& layer : m.layers) {
    const Matrix wq = to_matrix(layer.q_proj.weight->dense()), wk = to_matrix(layer.k_proj.weight->dense()),
                 wv = to_matrix(layer.v_proj.weight->dense()), wo = to_matrix(layer.o_proj.weight->dense()),
                 wg = to_matrix(layer.gate_proj.weight->dense()), wu = to_matrix(layer.up_proj.weight->dense()),
                 wd = to_matrix(layer.down_proj.weight->dense());
    const std::vector<double> n1 = to_vector(layer.input_norm), n2 = to_vector(layer.post_attention_norm);
    std::vector<std::vector<double>> q(T), k(T), v(T);
    for (int64_t t = 0; t < T; ++t) {
      const std::vector<double> h = rmsnorm(x[t], n1, c.rms_norm_eps);
      q[t] = matvec(wq, h);
      k[t] = matvec(wk, h);
      v[t] = matvec(wv, h);
      if (layer.q_proj.bias.defined()) {
        const auto bq = to_vector(layer.q_proj.bias), bk = to_vector(layer.k_proj.bias), bv = to_vector(layer.v_proj.bias);
        for (size_t i = 0; i < q[t].size(); ++i) q[t][i] += bq[i];
        for (size_t i = 0; i < k[t].size(); ++i) k[t][i] += bk[i], v[t][i] += bv[i];
      }
      for (int64_t h2 = 0; h2 < H; ++h2) {
        std::vector<double> head(q[t].begin() + h2 * D, q[t].begin() + (h2 + 1) * D);
        rope_in_place(head, t, inv_freq);
        std::copy(head.begin(), head.end(), q[t].begin() + h2 * D);
      }
      for (int64_t h2 = 0; h2 < KV; ++h2) {
        std::vector<double> head(k[t].begin() + h2 * D, k[t].begin() + (h2 + 1) * D);
        rope_in_place(head, t, inv_freq);
        std::copy(head.begin(), head.end(), k[t].begin() + h2 * D);
      }
    }
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> attended(size_t(H * D), 0.0);
      for (int64_t h2 = 0; h2 < H; ++h2) {
        const int64_t kvh = h2 / (H / KV);
        std::vector<double> scores(size_t(t + 1));
        double max_score = -1e300;
        for (int64_t s = 0; s <= t; ++s) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += q[t][h2 * D + d] * k[s][kvh * D + d];
          scores[s] = dot / std::sqrt(double(D));
          max_score = std::max(max_score, scores[s]);
        }
        double total = 0;
        for (double& s : scores) total += s = std::exp(s - max_score);
        for (int64_t s = 0; s <= t; ++s)
          for (int64_t d = 0; d < D; ++d) attended[h2 * D + d] += scores[s] / total * v[s][kvh * D + d];
      }
      const std::vector<double> o = matvec(wo, attended);
      for (size_t i = 0; i < o.size(); ++i) x[t][i] += o[i];
      const std::vector<double> h = rmsnorm(x[t], n2, c.rms_norm_eps);
      const std::vector<double> g = matvec(wg, h), u = matvec(wu, h);
      std::vector<double> act(g.size());
      for (size_t i = 0; i < g.size(); ++i) act[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
      const std::vector<double> down = matvec(wd, act);
      for (size_t i = 0; i < down.size(); ++i) x[t][i] += down[i];
    }
  }
  const Matrix head = to_matrix(m.lm_head.weight->dense());
  const std::vector<double> final_norm = to_vector(m.norm);
  Matrix logits;
  for (int64_t t = 0; t < T; ++t) logits.push_back(matvec(head, rmsnorm(x[t], final_norm, c.rms_norm_eps)));
  return logits;
}

ModelConfig small_config() {
  ModelConfig c;
  c.vocab_size = 37;
  c.hidden_size = 24;
  c.intermediate_size = 40;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;  // explicit head_dim: 4 * 8 != 24
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000;
  c.max_position_embeddings = 64;
  return c;
}

Transformer random_model(const ModelConfig& c, uint64_t seed) {
  at::manual_seed(seed);
  auto linear = [](int64_t out, int64_t in, bool bias) {
    Linear l;
    l.weight = std::make_shared<DenseWeight>(at::randn({out, in}) * 0.3);
    if (bias) l.bias = at::randn({out}) * 0.1;
    return l;
  };
  Transformer m;
  m.config = c;
  m.embed_tokens = at::randn({c.vocab_size, c.hidden_size});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    DecoderLayer layer;
    layer.input_norm = 1 + 0.1 * at::randn({c.hidden_size});
    layer.post_attention_norm = 1 + 0.1 * at::randn({c.hidden_size});
    layer.q_proj = linear(c.num_heads * c.head_dim, c.hidden_size, c.attention_bias);
    layer.k_proj = linear(c.num_kv_heads * c.head_dim, c.hidden_size, c.attention_bias);
    layer.v_proj = linear(c.num_kv_heads * c.head_dim, c.hidden_size, c.attention_bias);
    layer.o_proj = linear(c.hidden_size, c.num_heads * c.head_dim, false);
    layer.gate_proj = linear(c.intermediate_size, c.hidden_size, false);
    layer.up_proj = linear(c.intermediate_size, c.hidden_size, false);
    layer.down_proj = linear(c.hidden_size, c.intermediate_size, false);
    m.layers.push_back(layer);
  }
  m.norm = 1 + 0.1 * at::randn({c.hidden_size});
  m.lm_head.weight = c.tie_word_embeddings ? std::make_shared<DenseWeight>(m.embed_tokens)
                                           : std::make_shared<DenseWeight>(at::randn({c.vocab_size, c.hidden_size}));
  m.rope = Rope(c, at::kCPU);
  return m;
}

void expect_matches_reference(const Transformer& model) {
  const std::vector<std::vector<int64_t>> batch = {{3, 17, 0, 36, 5, 5, 21, 9, 14}, {1, 2, 3, 4, 5, 6, 7, 8, 9}};
  at::Tensor tokens = at::empty({2, 9}, at::kLong);
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 9; ++t) tokens[b][t] = batch[b][t];
  const at::Tensor logits = model.forward(tokens).to(at::kDouble);
  for (int b = 0; b < 2; ++b) {
    const Matrix expected = reference_forward(model, batch[size_t(b)]);
    double max_err = 0, max_ref = 0;
    for (int t = 0; t < 9; ++t)
      for (int64_t v = 0; v < model.config.vocab_size; ++v) {
        max_err = std::max(max_err, std::abs(logits[b][t][v].item<double>() - expected[t][v]));
        max_ref = std::max(max_ref, std::abs(expected[t][v]));
      }
    EXPECT_LT(max_err / max_ref, 1e-4) << "sequence " << b;
  }
}

TEST(Transformer, MatchesLoopReferenceWithGqaAndExplicitHeadDim) { expect_matches_reference(random_model(small_config(), 1)); }

TEST(Transformer, MatchesLoopReferenceWithQwen2BiasesAndTiedEmbeddings) {
  ModelConfig c = small_config();
  c.architecture = "qwen2";
  c.attention_bias = true;
  c.tie_word_embeddings = true;
  expect_matches_reference(random_model(c, 2));
}

TEST(Transformer, MatchesLoopReferenceWithLlama3RopeScaling) {
  ModelConfig c = small_config();
  c.rope_theta = 500000;
  c.rope_scaling.type = "llama3";
  c.rope_scaling.factor = 8;
  c.rope_scaling.original_max_position_embeddings = 32;  // small so that all three bands occur for head_dim 8
  expect_matches_reference(random_model(c, 3));
}

TEST(Transformer, MultiHeadAttentionWithoutGrouping) {
  ModelConfig c = small_config();
  c.num_kv_heads = c.num_heads;
  expect_matches_reference(random_model(c, 4));
}

TEST(Transformer, IncrementalDecodingWithKvCacheEqualsFullForward) {
  const Transformer model = random_model(small_config(), 5);
  const at::Tensor tokens = at::randint(0, model.config.vocab_size, {1, 12}, at::kLong);
  const at::Tensor full = model.forward(tokens);
  KVCache cache = model.make_cache(1, 12);
  std::vector<at::Tensor> pieces = {model.forward(tokens.narrow(1, 0, 5), &cache)};
  for (int64_t t = 5; t < 12; ++t) pieces.push_back(model.forward(tokens.narrow(1, t, 1), &cache));
  const at::Tensor incremental = at::cat(pieces, 1);
  EXPECT_TRUE(at::allclose(full, incremental, 1e-5, 1e-5)) << (full - incremental).abs().max().item<double>();
  EXPECT_EQ(cache.length, 12);
}

TEST(Transformer, RejectsOutOfRangeTokenIds) {
  const Transformer model = random_model(small_config(), 6);
  EXPECT_THROW(model.forward(at::full({1, 2}, int64_t(37), at::kLong)), Error);
}

}  // namespace
}  // namespace llmpress

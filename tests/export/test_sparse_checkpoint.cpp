// compressed-tensors sparse checkpoints (sparse-bitmask, sparse-24-bitmask): the writer against a
// literal reading of the format (bit order, offsets) on hand-made and random matrices, the round
// trip writer -> loader bit for bit, and hostile files refused with one error naming file and tensor.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "llmpress/core/error.h"
#include "llmpress/export/safetensors_writer.h"
#include "llmpress/export/sparse_checkpoint_writer.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/io/safetensors.h"
#include "llmpress/model/transformer.h"
#include "test_util.h"

namespace llmpress {
namespace {

using test::slurp;

namespace fs = std::filesystem;

const at::Tensor& part(const std::vector<NamedTensor>& parts, const std::string& name) {
  for (const NamedTensor& t : parts)
    if (t.name == name) return t.tensor;
  throw std::runtime_error("no tensor " + name);
}

std::vector<std::string> names_of(const std::vector<NamedTensor>& parts) {
  std::vector<std::string> names;
  for (const NamedTensor& t : parts) names.push_back(t.name);
  return names;
}

template <typename T>
std::vector<T> values_of(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  return std::vector<T>(c.data_ptr<T>(), c.data_ptr<T>() + c.numel());
}

std::vector<float> floats_of(const at::Tensor& t) { return values_of<float>(t.to(at::kFloat)); }

// The format read literally: weight (r, j) is bit (j % 8) of byte j / 8 of bitmask row r; values
// follow in row-major order; row r's first value sits at row_offsets[r].
struct Literal {
  std::vector<uint8_t> bitmask;
  std::vector<float> values;
  std::vector<int64_t> row_offsets;
};

Literal literal_bitmask(const at::Tensor& w, const at::Tensor& keep) {
  const int64_t rows = w.size(0), cols = w.size(1), row_bytes = (cols + 7) / 8;
  Literal out;
  out.bitmask.assign(size_t(rows * row_bytes), 0);
  for (int64_t r = 0; r < rows; ++r) {
    out.row_offsets.push_back(int64_t(out.values.size()));
    for (int64_t j = 0; j < cols; ++j)
      if (keep[r][j].item<bool>()) {
        out.bitmask[size_t(r * row_bytes + j / 8)] |= uint8_t(1u << (j % 8));
        out.values.push_back(w[r][j].item<float>());
      }
  }
  return out;
}

TEST(SparseCheckpointWriter, BitmaskLayoutByHand) {
  // 3 x 10 (a row is two bytes, the second one padded): row 0 keeps columns 0, 3, 9; row 1 has
  // only a negative zero (pruned too); row 2 keeps 1, 2, 7, 8.
  at::Tensor w = at::zeros({3, 10});
  w[0][0] = 1.5;
  w[0][3] = -2;
  w[0][9] = 0.25;
  w[1][4] = -0.0;
  w[2][1] = 3;
  w[2][2] = -0.5;
  w[2][7] = 4;
  w[2][8] = -1;
  const std::vector<NamedTensor> parts = sparse_compressed_tensors("m.q_proj", w.to(at::kHalf), SparseFormat::Bitmask);
  EXPECT_EQ(names_of(parts), (std::vector<std::string>{"m.q_proj.shape", "m.q_proj.compressed", "m.q_proj.bitmask",
                                                        "m.q_proj.row_offsets"}));
  const at::Tensor& shape = part(parts, "m.q_proj.shape");
  EXPECT_EQ(shape.scalar_type(), at::kLong);
  EXPECT_EQ(shape.sizes(), (std::vector<int64_t>{2}));
  EXPECT_EQ(values_of<int64_t>(shape), (std::vector<int64_t>{3, 10}));
  const at::Tensor& compressed = part(parts, "m.q_proj.compressed");
  EXPECT_EQ(compressed.scalar_type(), at::kHalf);  // the weight's dtype
  EXPECT_EQ(floats_of(compressed), (std::vector<float>{1.5f, -2.0f, 0.25f, 3.0f, -0.5f, 4.0f, -1.0f}));
  const at::Tensor& bitmask = part(parts, "m.q_proj.bitmask");
  EXPECT_EQ(bitmask.scalar_type(), at::kByte);
  EXPECT_EQ(bitmask.sizes(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(values_of<uint8_t>(bitmask), (std::vector<uint8_t>{0x09, 0x02, 0x00, 0x00, 0x86, 0x01}));
  const at::Tensor& offsets = part(parts, "m.q_proj.row_offsets");
  EXPECT_EQ(offsets.scalar_type(), at::kLong);
  EXPECT_EQ(values_of<int64_t>(offsets), (std::vector<int64_t>{0, 3, 3}));
}

TEST(SparseCheckpointWriter, TwoFourLayoutByHand) {
  // Row 0: groups [1 0 2 0] [0 0 3 4] [0 0 0 0]; row 1: [0 0 0 5] [6 7 0 0] [0 8 0 9]. A group with
  // fewer than two nonzeros also keeps its first zeros: columns 8, 9 of row 0, column 0 of row 1.
  const at::Tensor w = at::tensor({1.f, 0.f, 2.f, 0.f, 0.f, 0.f, 3.f, 4.f, 0.f, 0.f, 0.f, 0.f,  //
                                   0.f, 0.f, 0.f, 5.f, 6.f, 7.f, 0.f, 0.f, 0.f, 8.f, 0.f, 9.f})
                           .reshape({2, 12})
                           .to(at::kBFloat16);
  const std::vector<NamedTensor> parts = sparse_compressed_tensors("m.up_proj", w, SparseFormat::Bitmask24);
  EXPECT_EQ(names_of(parts),
            (std::vector<std::string>{"m.up_proj.shape", "m.up_proj.compressed", "m.up_proj.bitmask"}));
  const at::Tensor& shape = part(parts, "m.up_proj.shape");
  EXPECT_EQ(shape.scalar_type(), at::kLong);
  EXPECT_EQ(shape.sizes(), (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(values_of<int64_t>(shape), (std::vector<int64_t>{2, 12}));
  const at::Tensor& compressed = part(parts, "m.up_proj.compressed");
  EXPECT_EQ(compressed.scalar_type(), at::kBFloat16);
  EXPECT_EQ(compressed.sizes(), (std::vector<int64_t>{2, 6}));
  EXPECT_EQ(floats_of(compressed), (std::vector<float>{1, 2, 3, 4, 0, 0, 0, 5, 6, 7, 8, 9}));
  const at::Tensor& bitmask = part(parts, "m.up_proj.bitmask");
  EXPECT_EQ(bitmask.scalar_type(), at::kByte);
  EXPECT_EQ(bitmask.sizes(), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(values_of<uint8_t>(bitmask), (std::vector<uint8_t>{0xC5, 0x03, 0x39, 0x0A}));
}

TEST(SparseCheckpointWriter, RandomMatricesFollowTheLiteralReading) {
  at::manual_seed(7);
  for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {5, 13}, {7, 16}, {4, 33}}) {
    const at::Tensor w = at::randn({rows, cols}) * at::rand({rows, cols}).gt(0.6);
    const Literal expected = literal_bitmask(w, w.ne(0));
    const std::vector<NamedTensor> parts = sparse_compressed_tensors("m", w, SparseFormat::Bitmask);
    EXPECT_EQ(values_of<uint8_t>(part(parts, "m.bitmask")), expected.bitmask) << rows << "x" << cols;
    EXPECT_EQ(floats_of(part(parts, "m.compressed")), expected.values) << rows << "x" << cols;
    EXPECT_EQ(values_of<int64_t>(part(parts, "m.row_offsets")), expected.row_offsets) << rows << "x" << cols;
  }
  for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{3, 4}, {5, 12}, {6, 32}}) {
    // Two nonzeros per group (the largest two of four), so the kept positions are the nonzeros.
    const at::Tensor dense = at::randn({rows, cols / 4, 4});
    const at::Tensor rank = dense.abs().argsort(int64_t(-1), false).argsort(int64_t(-1), false);
    const at::Tensor w = (dense * rank.ge(2)).reshape({rows, cols});
    const Literal expected = literal_bitmask(w, w.ne(0));
    const std::vector<NamedTensor> parts = sparse_compressed_tensors("m", w, SparseFormat::Bitmask24);
    EXPECT_EQ(values_of<uint8_t>(part(parts, "m.bitmask")), expected.bitmask) << rows << "x" << cols;
    EXPECT_EQ(floats_of(part(parts, "m.compressed")), expected.values) << rows << "x" << cols;
  }
}

TEST(SparseCheckpointWriter, RefusesWhatTheFormatCannotHold) {
  const auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const at::Tensor three = at::tensor({1.f, 2.f, 3.f, 0.f, 1.f, 0.f, 0.f, 0.f}).reshape({1, 8});
  std::string m =
      message([&] { sparse_compressed_tensors("model.layers.0.mlp.up_proj", three, SparseFormat::Bitmask24); });
  EXPECT_NE(m.find("model.layers.0.mlp.up_proj"), std::string::npos) << m;
  EXPECT_NE(m.find("columns 0..3 hold 3 nonzeros"), std::string::npos) << m;
  m = message([&] { sparse_compressed_tensors("m", at::ones({2, 6}), SparseFormat::Bitmask24); });
  EXPECT_NE(m.find("multiple of 4"), std::string::npos) << m;
  m = message([&] { sparse_compressed_tensors("m", at::ones({6}), SparseFormat::Bitmask); });
  EXPECT_NE(m.find("not a matrix"), std::string::npos) << m;
  EXPECT_EQ(parse_sparse_format("sparse-24-bitmask"), SparseFormat::Bitmask24);
  EXPECT_THROW(parse_sparse_format("marlin-24"), Error);
}

TEST(SparseCheckpointWriter, QuantizationConfigAsCompressedTensorsWritesIt) {
  const nlohmann::json q = sparse_quantization_config(SparseFormat::Bitmask24, 0.375, {"model.layers.1.mlp.down_proj"});
  const nlohmann::json expected = nlohmann::json::parse(R"({
    "quant_method": "compressed-tensors",
    "version": "0.12.2",
    "sparsity_config": {
      "format": "sparse-24-bitmask",
      "global_sparsity": 0.375,
      "sparsity_structure": "2:4",
      "targets": ["Linear"],
      "ignore": ["lm_head", "model.layers.1.mlp.down_proj"],
      "registry_requires_subclass": false
    },
    "transform_config": {}
  })");
  EXPECT_EQ(q, expected);
  EXPECT_EQ(sparse_quantization_config(SparseFormat::Bitmask, 0.5, {})["sparsity_config"]["sparsity_structure"],
            "unstructured");
  EXPECT_EQ(sparse_quantization_config(SparseFormat::Bitmask, 0.5, {"lm_head"})["sparsity_config"]["ignore"],
            (nlohmann::json{"lm_head"}));
}

// A small model whose decoder linears are pruned: half of every row at random, or 2:4.
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
  return c;
}

bool is_linear(const std::string& name) {
  return name.find("_proj.weight") != std::string::npos && name.rfind("model.layers.", 0) == 0;
}

std::vector<NamedTensor> pruned_weights(const ModelConfig& c, bool two_four) {
  at::manual_seed(11);
  std::vector<NamedTensor> out;
  for (const auto& [name, shape] : expected_tensor_shapes(c)) {
    at::Tensor t = name.find("norm") != std::string::npos ? 1 + 0.1 * at::randn(shape) : 0.3 * at::randn(shape);
    if (is_linear(name)) {
      if (two_four) {
        const at::Tensor groups = t.view({shape[0], shape[1] / 4, 4});
        t = (groups * groups.abs().argsort(int64_t(-1), false).argsort(int64_t(-1), false).ge(2)).reshape(shape);
      } else {
        t = t * at::rand(shape).ge(0.5);
      }
    }
    out.push_back({name, t});
  }
  return out;
}

TEST(SparseCheckpoint, RoundTripIsExact) {
  const ModelConfig config = tiny_config();
  test::TempDir dir;
  for (const SparseFormat format : {SparseFormat::Bitmask, SparseFormat::Bitmask24}) {
    const std::vector<NamedTensor> tensors = pruned_weights(config, format == SparseFormat::Bitmask24);
    for (const std::optional<at::ScalarType> dtype : {std::optional<at::ScalarType>(), std::optional(at::kHalf),
                                                      std::optional(at::kBFloat16)}) {
      const std::string label = std::string(sparse_format_name(format)) + (dtype ? c10::toString(*dtype) : " f32");
      const std::string out = dir.file("m");
      SparseCheckpointOptions options;
      options.format = format;
      options.dtype = dtype;
      write_sparse_checkpoint(out, config, tensors, {}, options);

      // The stored tensors: no dense weight for a compressed layer.
      const SafetensorsFile file = read_safetensors(out + "/model.safetensors");
      std::set<std::string> stored;
      for (const RawTensor& t : file.tensors) stored.insert(t.name);
      EXPECT_FALSE(stored.count("model.layers.0.self_attn.q_proj.weight")) << label;
      EXPECT_TRUE(stored.count("model.layers.0.self_attn.q_proj.bitmask")) << label;
      EXPECT_EQ(stored.count("model.layers.1.mlp.down_proj.row_offsets"), format == SparseFormat::Bitmask ? 1u : 0u);
      EXPECT_TRUE(stored.count("model.embed_tokens.weight")) << label;

      const nlohmann::json hf = nlohmann::json::parse(slurp(out + "/config.json"));
      const nlohmann::json& sparsity = hf["quantization_config"]["sparsity_config"];
      EXPECT_EQ(sparsity["format"], sparse_format_name(format)) << label;
      EXPECT_EQ(sparsity["ignore"], (nlohmann::json{"lm_head"})) << label;
      double zeros = 0, total = 0;
      for (const NamedTensor& t : tensors) {
        const at::Tensor c = dtype ? t.tensor.to(*dtype) : t.tensor;
        zeros += double(c.eq(0).sum().item<int64_t>());
        total += double(c.numel());
      }
      EXPECT_DOUBLE_EQ(sparsity["global_sparsity"].get<double>(), zeros / total) << label;

      const Checkpoint back = open_checkpoint(out);
      EXPECT_EQ(back.sparse_linears.size(), size_t(7 * config.num_layers)) << label;
      for (const NamedTensor& t : tensors) {
        const at::Tensor expected = dtype ? t.tensor.to(*dtype).to(at::kFloat) : t.tensor;
        EXPECT_TRUE(at::equal(back.load(t.name), expected)) << label << " " << t.name;
      }
      // The model runs from it exactly as from the dense tensors.
      HfCheckpointOptions plain;
      plain.dtype = dtype;
      write_hf_checkpoint(dir.file("dense"), config, tensors, {}, plain);
      const at::Tensor tokens = at::arange(1, 17, at::kLong).unsqueeze(0);
      EXPECT_TRUE(at::equal(Transformer::load(back).forward(tokens),
                            Transformer::load(open_checkpoint(dir.file("dense"))).forward(tokens)))
          << label;
    }
  }
}

TEST(SparseCheckpoint, SomeLayersDenseAndRefusals) {
  const ModelConfig config = tiny_config();
  test::TempDir dir;
  const std::vector<NamedTensor> tensors = pruned_weights(config, false);
  SparseCheckpointOptions options;
  options.compress = {"model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.up_proj.weight"};
  write_sparse_checkpoint(dir.file("m"), config, tensors, {}, options);
  const nlohmann::json hf = nlohmann::json::parse(slurp(dir.file("m/config.json")));
  const nlohmann::json& ignore = hf["quantization_config"]["sparsity_config"]["ignore"];
  EXPECT_EQ(ignore.size(), 1u + 7 * 2 - 2);
  EXPECT_EQ(ignore[0], "lm_head");
  EXPECT_NE(std::find(ignore.begin(), ignore.end(), "model.layers.0.self_attn.k_proj"), ignore.end());
  EXPECT_EQ(std::find(ignore.begin(), ignore.end(), "model.layers.0.self_attn.q_proj"), ignore.end());
  const Checkpoint back = open_checkpoint(dir.file("m"));
  EXPECT_EQ(back.sparse_linears.size(), 2u);
  for (const NamedTensor& t : tensors) EXPECT_TRUE(at::equal(back.load(t.name), t.tensor)) << t.name;

  // Not 2:4: nothing is written. Not a decoder linear: refused.
  options.format = SparseFormat::Bitmask24;
  EXPECT_THROW(write_sparse_checkpoint(dir.file("x"), config, tensors, {}, options), Error);
  EXPECT_FALSE(fs::exists(dir.file("x")));
  options.format = SparseFormat::Bitmask;
  options.compress = {"model.embed_tokens.weight"};
  EXPECT_THROW(write_sparse_checkpoint(dir.file("x"), config, tensors, {}, options), Error);
  EXPECT_FALSE(fs::exists(dir.file("x")));
}

// Hostile files: the tiny model with layer 0's q_proj stored as `parts` under `format`.
class SparseCheckpointHostile : public ::testing::Test {
 protected:
  const std::string module = "model.layers.0.self_attn.q_proj";
  ModelConfig config = tiny_config();
  test::TempDir dir;
  std::vector<NamedTensor> tensors = pruned_weights(config, true);  // 2:4 fits both formats
  int count = 0;

  at::Tensor weight() const {
    for (const NamedTensor& t : tensors)
      if (t.name == module + ".weight") return t.tensor;
    return {};
  }
  std::vector<NamedTensor> valid(SparseFormat format) const {
    return sparse_compressed_tensors(module, weight(), format);
  }

  std::string write(const std::vector<NamedTensor>& parts, const nlohmann::json& quantization_config) {
    const std::string out = dir.file("m" + std::to_string(count++));
    HfCheckpointOptions options;
    options.replacements[module + ".weight"] = parts;
    options.extra_config["quantization_config"] = quantization_config;
    write_hf_checkpoint(out, config, tensors, {}, options);
    return out;
  }
  std::string write(const std::vector<NamedTensor>& parts, SparseFormat format) {
    return write(parts, sparse_quantization_config(format, 0.5, {}));
  }

  // Opening and loading the weight fails with one Error that starts with `file` and contains `needle`.
  void expect_error(const std::string& folder, const std::string& file, const std::string& needle) {
    try {
      open_checkpoint(folder).load(module + ".weight");
      ADD_FAILURE() << "no error; expected " << needle;
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.rfind(file + ": ", 0), 0u) << m;
      EXPECT_NE(m.find(needle), std::string::npos) << m;
    }
  }
  void expect_tensor_error(const std::vector<NamedTensor>& parts, SparseFormat format, const std::string& needle) {
    const std::string folder = write(parts, format);
    expect_error(folder, folder + "/model.safetensors", needle);
  }
  static std::vector<NamedTensor> replaced(std::vector<NamedTensor> parts, const std::string& name, at::Tensor t) {
    for (NamedTensor& p : parts)
      if (p.name == name) p.tensor = t;
    return parts;
  }
  static std::vector<NamedTensor> without(std::vector<NamedTensor> parts, const std::string& name) {
    parts.erase(std::remove_if(parts.begin(), parts.end(), [&](const NamedTensor& p) { return p.name == name; }),
                parts.end());
    return parts;
  }
};

TEST_F(SparseCheckpointHostile, BitmaskFormat) {
  const std::vector<NamedTensor> ok = valid(SparseFormat::Bitmask);
  ASSERT_TRUE(at::equal(open_checkpoint(write(ok, SparseFormat::Bitmask)).load(module + ".weight"), weight()));
  const at::Tensor bitmask = part(ok, module + ".bitmask"), compressed = part(ok, module + ".compressed");
  const at::Tensor offsets = part(ok, module + ".row_offsets");
  const int64_t rows = bitmask.size(0);

  // Bitmask size against the shape.
  expect_tensor_error(replaced(ok, module + ".bitmask", at::zeros({rows, bitmask.size(1) + 1}, at::kByte)),
                      SparseFormat::Bitmask, module + ".bitmask is U8 [32, 5]");
  expect_tensor_error(replaced(ok, module + ".bitmask", bitmask.to(at::kInt)), SparseFormat::Bitmask,
                      module + ".bitmask is I32");
  // Compressed length against the popcount.
  expect_tensor_error(replaced(ok, module + ".compressed", compressed.narrow(0, 0, compressed.size(0) - 1)),
                      SparseFormat::Bitmask, "bits set but " + module + ".compressed holds");
  // A padding bit cannot be set here (32 columns fill whole bytes); an extra bit in a row is a count error.
  at::Tensor more = bitmask.clone();
  more[0][0] = uint8_t(0xff);  // 4 of its bits were set (2:4 weights)
  expect_tensor_error(replaced(ok, module + ".bitmask", more), SparseFormat::Bitmask, "bits set but");
  // row_offsets: not monotone, out of range, monotone but not where the bitmask puts the rows.
  at::Tensor swapped = offsets.clone();
  swapped[1] = offsets[2].item<int64_t>();
  swapped[2] = offsets[1].item<int64_t>();
  expect_tensor_error(replaced(ok, module + ".row_offsets", swapped), SparseFormat::Bitmask, "must be monotone");
  at::Tensor beyond = offsets.clone();
  beyond[rows - 1] = compressed.size(0) + 1;
  expect_tensor_error(replaced(ok, module + ".row_offsets", beyond), SparseFormat::Bitmask, "outside 0..");
  at::Tensor shifted = offsets.clone();
  shifted[1] = offsets[1].item<int64_t>() - 1;
  expect_tensor_error(replaced(ok, module + ".row_offsets", shifted), SparseFormat::Bitmask,
                      "row 1 starts at value");
  expect_tensor_error(replaced(ok, module + ".row_offsets", offsets.narrow(0, 0, rows - 1)), SparseFormat::Bitmask,
                      module + ".row_offsets is I64 [31]");
  // shape: dtype, values against the other tensors and the config.
  expect_tensor_error(replaced(ok, module + ".shape", at::tensor({32, 32}, at::kInt)), SparseFormat::Bitmask,
                      module + ".shape must be int64");
  expect_tensor_error(replaced(ok, module + ".shape", at::tensor(std::vector<int64_t>{32, -5})), SparseFormat::Bitmask,
                      "out of range");
  expect_tensor_error(replaced(ok, module + ".shape", at::tensor(std::vector<int64_t>{32, 40})), SparseFormat::Bitmask,
                      "needs U8 [32, 5]");
  // Missing pieces, a dense weight next to them, integer values.
  expect_tensor_error(without(ok, module + ".bitmask"), SparseFormat::Bitmask, "no tensor " + module + ".bitmask");
  expect_tensor_error(without(ok, module + ".row_offsets"), SparseFormat::Bitmask,
                      "no tensor " + module + ".row_offsets");
  std::vector<NamedTensor> both = ok;
  both.push_back({module + ".weight", weight()});
  expect_tensor_error(both, SparseFormat::Bitmask, "both " + module + ".weight");
  expect_tensor_error(replaced(ok, module + ".compressed", compressed.to(at::kInt)), SparseFormat::Bitmask,
                      module + ".compressed has dtype I32");
}

TEST_F(SparseCheckpointHostile, TwoFourFormat) {
  const std::vector<NamedTensor> ok = valid(SparseFormat::Bitmask24);
  ASSERT_TRUE(at::equal(open_checkpoint(write(ok, SparseFormat::Bitmask24)).load(module + ".weight"), weight()));
  const at::Tensor bitmask = part(ok, module + ".bitmask"), compressed = part(ok, module + ".compressed");
  // Three bits in one group, one in the next: the popcount still matches, the 2:4 structure does not.
  at::Tensor skewed = bitmask.clone();
  skewed[0][0] = uint8_t(0x17);  // group 0: columns 0, 1, 2; group 1: column 4
  expect_tensor_error(replaced(ok, module + ".bitmask", skewed), SparseFormat::Bitmask24,
                      "row 0, columns 0..3 have 3 bits set");
  expect_tensor_error(replaced(ok, module + ".compressed", compressed.reshape({-1})), SparseFormat::Bitmask24,
                      "needs [out, in / 2]");
  std::vector<NamedTensor> offsets = ok;
  offsets.push_back({module + ".row_offsets", at::zeros({32}, at::kLong)});
  expect_tensor_error(offsets, SparseFormat::Bitmask24, "has no place in sparse-24-bitmask");
  // A sparse-bitmask layer under a sparse-24-bitmask config: its flat values do not fit.
  expect_tensor_error(without(valid(SparseFormat::Bitmask), module + ".row_offsets"), SparseFormat::Bitmask24,
                      "needs [out, in / 2]");
}

TEST_F(SparseCheckpointHostile, PaddingBitsAndConfig) {
  // 2 x 12 has four padding bits per row; a set one is refused. (A weight of its own, not the model's.)
  const at::Tensor w = at::tensor({1.f, 0.f, 2.f, 0.f, 0.f, 0.f, 3.f, 4.f, 5.f, 6.f, 0.f, 0.f}).reshape({1, 12});
  const std::vector<NamedTensor> parts = sparse_compressed_tensors("p", w, SparseFormat::Bitmask);
  at::Tensor mask = part(parts, "p.bitmask").clone();
  mask[0][1] = uint8_t(mask[0][1].item<uint8_t>() | 0x80);
  test::TempDir files;
  write_safetensors(files.file("p.safetensors"), replaced(parts, "p.bitmask", mask));
  const SafetensorsFile f = read_safetensors(files.file("p.safetensors"));
  SparseCompressedLinear l;
  for (const RawTensor& t : f.tensors) {
    if (t.name == "p.compressed") l.compressed = t;
    if (t.name == "p.bitmask") l.bitmask = t;
    if (t.name == "p.row_offsets") l.row_offsets = t;
  }
  l.out_features = 1;
  l.in_features = 12;
  try {
    decompress_sparse(l);
    ADD_FAILURE() << "padding bit accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("padding must be zero"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).rfind(files.file("p.safetensors"), 0), 0u) << e.what();
  }

  // Unknown format names, quantization, a compressed layer under format "dense".
  const std::vector<NamedTensor> ok = valid(SparseFormat::Bitmask);
  nlohmann::json q = sparse_quantization_config(SparseFormat::Bitmask, 0.5, {});
  q["sparsity_config"]["format"] = "sparse-bitmask-v9";
  std::string folder = write(ok, q);
  expect_error(folder, folder + "/config.json", "sparsity_config.format 'sparse-bitmask-v9' is not supported");
  expect_error(folder, folder + "/config.json", "tensor " + module + ".bitmask in " + folder + "/model.safetensors");
  q["sparsity_config"]["format"] = "dense";
  folder = write(ok, q);
  expect_error(folder, folder + "/model.safetensors", module + ".bitmask is stored compressed");
  q = sparse_quantization_config(SparseFormat::Bitmask, 0.5, {});
  q["config_groups"] = {{"group_0", {{"targets", {"Linear"}}}}};
  folder = write(ok, q);
  expect_error(folder, folder + "/config.json", "quantization (config_groups) is not supported");
  q = sparse_quantization_config(SparseFormat::Bitmask, 0.5, {});
  q["sparsity_config"].erase("format");
  folder = write(ok, q);
  expect_error(folder, folder + "/config.json", "no format");
}

}  // namespace
}  // namespace llmpress

// Our sparse checkpoints against compressed-tensors' own compressors and decompressors
// (compressors/sparse_compressors/sparse_bitmask.py, sparse_24_bitmask.py) and config classes, on
// the tensors this test writes. Skips unless LLMPRESS_COMPRESSED_TENSORS_SRC names a checkout of
// neuralmagic/compressed-tensors (never part of ours); runs compressed_tensors_reference.py beside
// this file with /usr/bin/python3 (Debian's python3-torch and python3-numpy).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "llmpress/export/safetensors_writer.h"
#include "llmpress/export/sparse_checkpoint_writer.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/io/safetensors.h"
#include "test_util.h"

namespace llmpress {
namespace {

using test::slurp;

ModelConfig small_config() {
  ModelConfig c;
  c.vocab_size = 64;
  c.hidden_size = 48;
  c.intermediate_size = 80;
  c.num_layers = 1;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 12;
  c.max_position_embeddings = 64;
  return c;
}

std::vector<NamedTensor> pruned(const ModelConfig& c, bool two_four) {
  at::manual_seed(5);
  std::vector<NamedTensor> out;
  for (const auto& [name, shape] : expected_tensor_shapes(c)) {
    at::Tensor t = 0.3 * at::randn(shape);
    if (name.find("_proj.weight") != std::string::npos) {
      if (two_four) {
        const at::Tensor groups = t.view({shape[0], shape[1] / 4, 4});
        t = (groups * groups.abs().argsort(int64_t(-1), false).argsort(int64_t(-1), false).ge(2)).reshape(shape);
      } else {
        t = t * at::rand(shape).ge(0.5);
        t[0].zero_();  // an empty row
      }
    }
    out.push_back({name, t});
  }
  return out;
}

void write_raw(const std::string& path, const void* data, uint64_t bytes) {
  std::ofstream(path, std::ios::binary).write(static_cast<const char*>(data), std::streamsize(bytes));
}

std::string dtype_name(at::ScalarType t) {
  return t == at::kHalf ? "F16" : t == at::kBFloat16 ? "BF16" : "F32";
}

// Adds one layer to the manifest: the dense weight and the tensors our checkpoint stores for it.
void add_layer(nlohmann::json& layers, const std::string& dir, const std::string& module, const at::Tensor& dense,
               const std::string& format, const std::vector<RawTensor>& stored) {
  const std::string id = std::to_string(layers.size());
  const at::Tensor d = dense.contiguous();
  write_raw(dir + "/" + id + ".dense.bin", d.data_ptr(), uint64_t(d.nbytes()));
  bool exact = true;  // 2:4 groups with fewer than two nonzeros leave the filling zeros open
  if (format == "sparse-24-bitmask")
    exact = d.ne(0).view({d.size(0), d.size(1) / 4, 4}).sum(-1).eq(2).all().item<bool>();
  nlohmann::json layer = {{"module", module},
                          {"format", format},
                          {"dtype", dtype_name(d.scalar_type())},
                          {"exact", exact},
                          {"dense", {{"dtype", dtype_name(d.scalar_type())}, {"shape", d.sizes().vec()},
                                     {"file", id + ".dense.bin"}}},
                          {"ours", nlohmann::json::object()}};
  for (const RawTensor& t : stored) {
    if (t.name.rfind(module + ".", 0) != 0) continue;
    const std::string file = id + "." + t.name.substr(module.size() + 1) + ".bin";
    write_raw(dir + "/" + file, t.data, t.nbytes);
    layer["ours"][t.name] = {{"dtype", tensor_type_name(t.type)}, {"shape", t.shape}, {"file", file}};
  }
  EXPECT_FALSE(layer["ours"].empty()) << module;
  layers.push_back(layer);
}

TEST(CompressedTensorsReference, SameTensorsAndConfigAsTheirCode) {
  const char* repo = std::getenv("LLMPRESS_COMPRESSED_TENSORS_SRC");
  if (!repo || !*repo)
    GTEST_SKIP() << "set LLMPRESS_COMPRESSED_TENSORS_SRC to a checkout of neuralmagic/compressed-tensors "
                    "(and install python3-torch) to compare with its compressors";
  if (!std::filesystem::exists(std::string(repo) + "/src/compressed_tensors/compressors/sparse_compressors"))
    GTEST_SKIP() << repo << " is not a compressed-tensors checkout (no src/compressed_tensors/compressors)";
  const ModelConfig config = small_config();
  test::TempDir dir;
  nlohmann::json layers = nlohmann::json::array(), configs = nlohmann::json::array();

  // Whole checkpoints written by write_sparse_checkpoint: every decoder linear of the model.
  for (const SparseFormat format : {SparseFormat::Bitmask, SparseFormat::Bitmask24}) {
    const std::vector<NamedTensor> tensors = pruned(config, format == SparseFormat::Bitmask24);
    for (const at::ScalarType dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
      const std::string out = dir.file(std::string(sparse_format_name(format)) + "-" + dtype_name(dtype));
      SparseCheckpointOptions options;
      options.format = format;
      options.dtype = dtype;
      write_sparse_checkpoint(out, config, tensors, {}, options);
      configs.push_back(nlohmann::json::parse(slurp(out + "/config.json"))["quantization_config"]);
      const SafetensorsFile file = read_safetensors(out + "/model.safetensors");
      for (const NamedTensor& t : tensors)
        if (t.name.find("_proj.weight") != std::string::npos)
          add_layer(layers, dir.path(), t.name.substr(0, t.name.size() - 7), t.tensor.to(dtype),
                    sparse_format_name(format), file.tensors);
    }
  }
  // Hand-made edge cases through the per-tensor function: odd widths, empty rows, a full row,
  // negative zeros, and 2:4 groups with fewer than two nonzeros.
  at::Tensor odd = at::randn({5, 13});
  odd = odd * at::rand({5, 13}).gt(0.7);
  odd[1].zero_();
  odd[2].fill_(1.25);
  odd[3][4] = -0.0;
  at::Tensor sparse24 = at::zeros({3, 8});
  sparse24[0][1] = 2;
  sparse24[1][4] = -3;
  sparse24[1][7] = 0.5;
  sparse24[2][2] = 1;
  sparse24[2][3] = -1;
  const std::vector<std::tuple<std::string, at::Tensor, SparseFormat>> edges = {
      {"edge.odd", odd, SparseFormat::Bitmask}, {"edge.sparse24", sparse24, SparseFormat::Bitmask24}};
  for (const auto& [module, w, format] : edges) {
    const std::string path = dir.file(module + ".safetensors");
    write_safetensors(path, sparse_compressed_tensors(module, w, format));
    add_layer(layers, dir.path(), module, w, sparse_format_name(format), read_safetensors(path).tensors);
  }

  std::ofstream(dir.file("manifest.json")) << nlohmann::json{{"layers", layers}, {"configs", configs}}.dump();
  const std::string script =
      (std::filesystem::path(__FILE__).parent_path() / "compressed_tensors_reference.py").string();
  const std::string command =
      "/usr/bin/python3 " + script + " " + repo + " " + dir.path() + " > " + dir.file("log") + " 2>&1";
  const int status = std::system(command.c_str());
  const std::string log = slurp(dir.file("log"));
  std::printf("%s", log.c_str());
  EXPECT_EQ(status, 0) << command << "\n" << log;
  EXPECT_NE(log.find(std::to_string(layers.size()) + " layers checked"), std::string::npos) << log;
}

}  // namespace
}  // namespace llmpress

#include "llmpress/io/sparse_checkpoint.h"

#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "llmpress/core/error.h"
#include "llmpress/data/text.h"
#include "llmpress/io/checkpoint.h"

namespace llmpress {

namespace {

constexpr int64_t kMaxFeatures = int64_t(1) << 31;  // per dimension; keeps out * in far from overflow

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t read_i64(const uint8_t* p) {
  int64_t v;
  std::memcpy(&v, p, 8);  // safetensors offsets need not be 8-byte aligned
  return v;
}

bool is_float(TensorType t) { return t == TensorType::F32 || t == TensorType::F16 || t == TensorType::BF16; }

}  // namespace

void attach_sparse_linears(Checkpoint& ck, const std::string& config_path) {
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(read_text_file(config_path));
  } catch (const nlohmann::json::exception& e) {
    throw file_error(config_path, std::string("is not valid JSON: ") + e.what());
  }
  if (!config.is_object()) return;
  // compressed-tensors writes quantization_config; older releases wrote compression_config.
  const char* key = config.contains("quantization_config") ? "quantization_config" : "compression_config";
  if (!config.contains(key)) return;
  const nlohmann::json& q = config[key];
  if (!q.is_object()) throw file_error(config_path, std::string(key) + " is not an object");
  const std::string method = q.contains("quant_method") && q["quant_method"].is_string()
                                 ? q["quant_method"].get<std::string>() : std::string();
  if (method != "compressed-tensors" && !(method.empty() && std::string(key) == "compression_config")) return;
  if (q.contains("config_groups") && !q["config_groups"].is_null() &&
      !(q["config_groups"].is_object() && q["config_groups"].empty()))
    throw file_error(config_path, "compressed-tensors quantization (config_groups) is not supported; llmpress reads "
                                  "sparsity-only compressed-tensors checkpoints (sparse-bitmask, sparse-24-bitmask)");
  if (!q.contains("sparsity_config") || q["sparsity_config"].is_null() || q["sparsity_config"].empty()) return;
  const nlohmann::json& s = q["sparsity_config"];
  if (!s.is_object() || !s.contains("format") || !s["format"].is_string())
    throw file_error(config_path, std::string(key) + ".sparsity_config has no format string");
  const std::string format = s["format"].get<std::string>();
  std::set<std::string> modules;
  const RawTensor* first = nullptr;  // named in errors about the whole checkpoint
  for (const auto& [name, raw] : ck.tensors)
    for (const char* suffix : {".compressed", ".bitmask", ".row_offsets"})
      if (ends_with(name, suffix)) {
        modules.insert(name.substr(0, name.size() - std::strlen(suffix)));
        if (!first) first = &raw;
      }
  if (format != "dense" && format != "sparse-bitmask" && format != "sparse-24-bitmask")
    throw file_error(config_path, "sparsity_config.format '" + format +
                                      "' is not supported (dense, sparse-bitmask, sparse-24-bitmask)" +
                                      (first ? "; tensor " + first->name + " in " + first->file + " is stored in it"
                                             : std::string()));
  const bool two_four = format == "sparse-24-bitmask";
  if (format == "dense") {
    if (first)
      throw file_error(first->file, "tensor " + first->name + " is stored compressed but " + config_path +
                                        " says sparsity_config.format 'dense'");
    return;
  }
  for (const std::string& module : modules) {
    const std::string where = format + " layer " + module + ": ";
    std::string file;  // where the layer's tensors are, for errors about a missing one
    for (const char* suffix : {".compressed", ".bitmask", ".row_offsets"})
      if (file.empty() && ck.tensors.count(module + suffix)) file = ck.tensors.at(module + suffix).file;
    const auto take = [&](const char* suffix, bool required) {
      const auto it = ck.tensors.find(module + suffix);
      if (it == ck.tensors.end()) {
        if (required) throw file_error(file, where + "no tensor " + module + suffix);
        return RawTensor{};
      }
      RawTensor raw = it->second;
      ck.tensors.erase(it);
      return raw;
    };
    if (ck.tensors.count(module + ".weight"))
      throw file_error(file, where + "both " + module + ".weight and its compressed tensors are stored");
    SparseCompressedLinear l;
    l.two_four = two_four;
    const RawTensor shape = take(".shape", true);
    l.compressed = take(".compressed", true);
    l.bitmask = take(".bitmask", true);
    l.row_offsets = take(".row_offsets", !two_four);
    if (two_four && l.row_offsets.data)
      throw file_error(l.row_offsets.file, where + "tensor " + l.row_offsets.name + " has no place in " + format);

    // shape: int64 [2] (sparse-bitmask) or [2, 1] (sparse-24-bitmask); we accept either.
    if (shape.type != TensorType::I64 || shape.numel() != 2 || shape.nbytes != 16 ||
        !(shape.shape == std::vector<int64_t>{2} || shape.shape == std::vector<int64_t>{2, 1}))
      throw file_error(shape.file, where + "tensor " + shape.name + " must be int64 [2] or [2, 1], not " +
                                       tensor_type_name(shape.type) + " " + shape_string(shape.shape));
    l.out_features = read_i64(shape.data);
    l.in_features = read_i64(shape.data + 8);
    if (l.out_features < 1 || l.in_features < 1 || l.out_features >= kMaxFeatures || l.in_features >= kMaxFeatures)
      throw file_error(shape.file, where + "tensor " + shape.name + " holds the dense shape [" +
                                       std::to_string(l.out_features) + ", " + std::to_string(l.in_features) +
                                       "], which is out of range");
    const std::vector<int64_t> dense = {l.out_features, l.in_features};
    const std::vector<int64_t> mask_shape = {l.out_features, (l.in_features + 7) / 8};
    if (l.bitmask.type != TensorType::U8 || l.bitmask.shape != mask_shape)
      throw file_error(l.bitmask.file, where + "tensor " + l.bitmask.name + " is " +
                                           tensor_type_name(l.bitmask.type) + " " + shape_string(l.bitmask.shape) +
                                           "; a dense shape " + shape_string(dense) + " needs U8 " +
                                           shape_string(mask_shape));
    if (!is_float(l.compressed.type))
      throw file_error(l.compressed.file, where + "tensor " + l.compressed.name + " has dtype " +
                                              tensor_type_name(l.compressed.type) + " (F32, F16 or BF16 expected)");
    if (two_four) {
      if (l.in_features % 4 != 0 || l.compressed.shape != std::vector<int64_t>{l.out_features, l.in_features / 2})
        throw file_error(l.compressed.file, where + "tensor " + l.compressed.name + " has shape " +
                                                shape_string(l.compressed.shape) + "; 2:4 of " + shape_string(dense) +
                                                " needs [out, in / 2] with in a multiple of 4");
    } else {
      if (l.compressed.shape.size() != 1 || l.compressed.shape[0] > l.out_features * l.in_features)
        throw file_error(l.compressed.file, where + "tensor " + l.compressed.name + " has shape " +
                                                shape_string(l.compressed.shape) + "; a flat list of at most " +
                                                std::to_string(l.out_features * l.in_features) + " values expected");
      if (l.row_offsets.type != TensorType::I64 || l.row_offsets.shape != std::vector<int64_t>{l.out_features})
        throw file_error(l.row_offsets.file, where + "tensor " + l.row_offsets.name + " is " +
                                                 tensor_type_name(l.row_offsets.type) + " " +
                                                 shape_string(l.row_offsets.shape) + "; I64 [" +
                                                 std::to_string(l.out_features) + "] expected");
    }
    RawTensor weight;
    weight.name = module + ".weight";
    weight.file = l.compressed.file;
    weight.type = l.compressed.type;
    weight.shape = dense;
    weight.nbytes = shape.nbytes + l.compressed.nbytes + l.bitmask.nbytes + l.row_offsets.nbytes;  // as stored
    ck.tensors[weight.name] = weight;
    ck.sparse_linears[weight.name] = l;
  }
  ck.metadata["compressed-tensors"] = format + ", " + std::to_string(modules.size()) + " layers";
}

at::Tensor decompress_sparse(const SparseCompressedLinear& l) {
  const int64_t rows = l.out_features, cols = l.in_features, row_bytes = (cols + 7) / 8;
  const std::string& file = l.bitmask.file;
  const std::string where = std::string(l.two_four ? "sparse-24-bitmask" : "sparse-bitmask") + " tensor " +
                            l.bitmask.name + ": ";
  const int64_t count = l.compressed.numel();
  if (tensor_bytes(l.compressed.type, uint64_t(count)) != l.compressed.nbytes ||
      uint64_t(rows * row_bytes) != l.bitmask.nbytes)
    throw file_error(file, where + "byte counts do not match the shapes");
  const uint8_t* mask = l.bitmask.data;
  const uint8_t pad_mask = cols % 8 == 0 ? 0 : uint8_t(0xff << (cols % 8));  // bits past the last column

  // Check everything before writing a value: popcounts per row against the offsets and the values.
  std::vector<int64_t> starts(static_cast<size_t>(rows) + 1, 0);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = mask + r * row_bytes;
    if (row[row_bytes - 1] & pad_mask)
      throw file_error(file, where + "row " + std::to_string(r) + " has bits set past column " +
                                 std::to_string(cols - 1) + " (padding must be zero)");
    int64_t bits = 0;
    for (int64_t b = 0; b < row_bytes; ++b) bits += __builtin_popcount(row[b]);
    if (l.two_four) {
      for (int64_t g = 0; g < cols / 4; ++g) {
        const int nibble = (row[g / 2] >> (4 * (g % 2))) & 0xf;
        if (__builtin_popcount(nibble) != 2)
          throw file_error(file, where + "row " + std::to_string(r) + ", columns " + std::to_string(4 * g) + ".." +
                                     std::to_string(4 * g + 3) + " have " + std::to_string(__builtin_popcount(nibble)) +
                                     " bits set (2:4 needs exactly 2)");
      }
    }
    starts[size_t(r) + 1] = starts[size_t(r)] + bits;
  }
  if (starts.back() != count)
    throw file_error(file, where + "the bitmask has " + std::to_string(starts.back()) + " bits set but " +
                               l.compressed.name + " holds " + std::to_string(count) + " values");
  if (!l.two_four) {
    const std::string& name = l.row_offsets.name;
    if (tensor_bytes(TensorType::I64, uint64_t(rows)) != l.row_offsets.nbytes)
      throw file_error(l.row_offsets.file, "tensor " + name + " has a byte count that does not match its shape");
    std::vector<int64_t> offsets(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
      offsets[size_t(r)] = read_i64(l.row_offsets.data + 8 * r);
      if (offsets[size_t(r)] < (r ? offsets[size_t(r) - 1] : 0) || offsets[size_t(r)] > count)
        throw file_error(l.row_offsets.file, "tensor " + name + ": entry " + std::to_string(r) + " (" +
                                                 std::to_string(offsets[size_t(r)]) +
                                                 ") is below the one before it or outside 0.." +
                                                 std::to_string(count) + " (row offsets must be monotone)");
    }
    for (int64_t r = 0; r < rows; ++r)
      if (offsets[size_t(r)] != starts[size_t(r)])
        throw file_error(l.row_offsets.file, "tensor " + name + ": row " + std::to_string(r) + " starts at value " +
                                                 std::to_string(offsets[size_t(r)]) + " but the bitmask puts it at " +
                                                 std::to_string(starts[size_t(r)]));
  }

  std::vector<float> values(static_cast<size_t>(count));
  decode_to_f32(l.compressed.type, l.compressed.data, count, values.data());
  at::Tensor dense = at::zeros({rows, cols}, at::kFloat);
  float* out = dense.data_ptr<float>();
  const float* v = values.data();
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = mask + r * row_bytes;
    float* out_row = out + r * cols;
    for (int64_t j = 0; j < cols; ++j)
      if ((row[j / 8] >> (j % 8)) & 1) out_row[j] = *v++;
  }
  return dense;
}

}  // namespace llmpress

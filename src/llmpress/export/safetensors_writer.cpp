#include "llmpress/export/safetensors_writer.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "llmpress/core/error.h"
#include "llmpress/core/version.h"
#include "llmpress/export/model_tensors.h"
#include "llmpress/io/atomic_file.h"
#include "llmpress/io/hf_config.h"

namespace llmpress {
namespace {

struct DtypeInfo {
  const char* name;
  int rank;  // position in safetensors' Dtype enum: the serializer sorts by it, descending
};

DtypeInfo dtype_info(at::ScalarType type, const std::string& tensor_name) {
  switch (type) {
    case at::kFloat: return {"F32", 15};
    case at::kBFloat16: return {"BF16", 12};
    case at::kHalf: return {"F16", 11};
    case at::kInt: return {"I32", 13};
    case at::kLong: return {"I64", 18};
    case at::kByte: return {"U8", 4};
    default:
      throw Error("safetensors export: tensor " + tensor_name + " has dtype " + std::string(c10::toString(type)) +
                  "; only float32, float16, bfloat16, int32, int64 and uint8 are written");
  }
}

uint64_t tensor_nbytes(const at::Tensor& t) { return uint64_t(t.numel()) * t.element_size(); }

std::string shard_name(size_t index, size_t count) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "model-%05zu-of-%05zu.safetensors", index + 1, count);
  return buf;
}

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw file_error(path, "cannot read tokenizer file");
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors) {
  std::set<std::string> names;
  for (const NamedTensor& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") throw file_error(path, "invalid tensor name '" + t.name + "'");
    if (!names.insert(t.name).second) throw file_error(path, "tensor " + t.name + " given twice");
    dtype_info(t.tensor.scalar_type(), t.name);
  }
  std::vector<const NamedTensor*> order;
  for (const NamedTensor& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const NamedTensor* a, const NamedTensor* b) {
    const int ra = dtype_info(a->tensor.scalar_type(), a->name).rank;
    const int rb = dtype_info(b->tensor.scalar_type(), b->name).rank;
    return ra != rb ? ra > rb : a->name < b->name;
  });

  // Key order as the reference serializer writes it (tensors in data order, then __metadata__), so our
  // files are byte-identical to Python's for the same tensors.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  uint64_t offset = 0;
  for (const NamedTensor* t : order) {
    const uint64_t n = tensor_nbytes(t->tensor);
    header[t->name] = {{"dtype", dtype_info(t->tensor.scalar_type(), t->name).name},
                       {"shape", t->tensor.sizes().vec()},
                       {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  header["__metadata__"] = {{"format", "pt"}};
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data buffer 8-byte aligned

  AtomicFile file(path);
  const uint64_t header_size = text.size();
  file.write(&header_size, sizeof(header_size));
  file.write(text);
  for (const NamedTensor* t : order) {
    const at::Tensor data = t->data().to(at::kCPU).contiguous();
    if (data.scalar_type() != t->tensor.scalar_type() || data.sizes() != t->tensor.sizes())
      throw file_error(path, "tensor " + t->name + " was produced with another shape or dtype than announced");
    file.write(data.data_ptr(), tensor_nbytes(data));
  }
  file.commit();
}

std::vector<std::string> write_safetensors_files(const std::string& dir, const std::vector<NamedTensor>& tensors,
                                                 uint64_t max_shard_bytes) {
  // Fill shards in the given (state-dict) order; a tensor larger than the limit gets a shard of its own.
  std::vector<std::vector<NamedTensor>> shards(1);
  uint64_t current = 0, total = 0;
  for (const NamedTensor& t : tensors) {
    const uint64_t n = tensor_nbytes(t.tensor);
    if (max_shard_bytes > 0 && !shards.back().empty() && current + n > max_shard_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(t);
    current += n;
    total += n;
  }
  if (shards.size() == 1) {
    write_safetensors(dir + "/model.safetensors", tensors);
    return {"model.safetensors"};
  }
  std::vector<std::string> written;
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string name = shard_name(i, shards.size());
    write_safetensors(dir + "/" + name, shards[i]);
    for (const NamedTensor& t : shards[i]) weight_map[t.name] = name;
    written.push_back(name);
  }
  const nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  write_file_atomic(dir + "/model.safetensors.index.json", index.dump(2) + "\n");
  written.push_back("model.safetensors.index.json");
  return written;
}

void write_hf_checkpoint(const std::string& dir, const ModelConfig& config, const std::vector<NamedTensor>& tensors,
                         const std::vector<std::string>& tokenizer_files, const HfCheckpointOptions& options) {
  const std::string target = "Hugging Face export to " + dir;
  const std::map<std::string, NamedTensor> checked = check_export_tensors(config, tensors, target);
  std::vector<NamedTensor> out;  // given order, minus what the checkpoint does not store
  std::set<at::ScalarType> dtypes;
  for (const NamedTensor& t : tensors) {
    if (!checked.count(t.name)) continue;
    const auto replaced = options.replacements.find(t.name);
    if (replaced != options.replacements.end()) {
      for (const NamedTensor& r : replaced->second) out.push_back(r);
      continue;
    }
    const at::ScalarType dtype = options.dtype.value_or(t.tensor.scalar_type());
    dtype_info(dtype, t.name);
    dtypes.insert(dtype);
    if (!t.load && t.tensor.scalar_type() == dtype) {
      out.push_back(t);
    } else {
      out.push_back(NamedTensor::lazy(t.name, t.tensor.sizes().vec(), dtype,
                                      [t, dtype] { return t.data().to(at::kCPU).to(dtype); }));
    }
  }
  std::set<std::string> copied;
  for (const std::string& file : tokenizer_files) {
    const std::string name = std::filesystem::path(file).filename().string();
    if (name == "config.json" || name.find(".safetensors") != std::string::npos)
      throw Error(target + ": refusing to copy " + file + " as a tokenizer file");
    if (!copied.insert(name).second) throw Error(target + ": two tokenizer files are named " + name);
  }

  nlohmann::json hf = to_hf_config(config);
  hf["head_dim"] = export_head_dim(config);
  hf["num_key_value_heads"] = config.num_kv_heads > 0 ? config.num_kv_heads : config.num_heads;
  const at::ScalarType main_dtype = dtypes.size() == 1 ? *dtypes.begin() : at::kFloat;
  hf["torch_dtype"] = main_dtype == at::kHalf ? "float16" : main_dtype == at::kBFloat16 ? "bfloat16" : "float32";

  for (const auto& [key, value] : options.extra_config.items()) hf[key] = value;
  // Marks the folder as ours: a later run may replace it (check_output_path refuses other folders).
  if (!hf.contains("llmpress")) hf["llmpress"] = {{"version", version()}};
  AtomicDirectory folder(dir);
  write_file_atomic(folder.file("config.json"), hf.dump(2) + "\n");
  write_safetensors_files(folder.temp_path(), out, options.max_shard_bytes);
  for (const std::string& file : tokenizer_files)
    write_file_atomic(folder.file(std::filesystem::path(file).filename().string()), read_whole_file(file));
  folder.commit();
}

}  // namespace llmpress

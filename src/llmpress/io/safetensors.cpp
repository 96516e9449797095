#include "llmpress/io/safetensors.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "llmpress/core/error.h"
#include "llmpress/core/json_excerpt.h"
#include "llmpress/io/mapped_file.h"

namespace llmpress {

namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100000000;  // the reference reader's limit
constexpr int64_t kMaxDimension = int64_t(1) << 48;  // the schema's limit on offsets and dims

// The bit widths of all dtypes the format defines, so a known-but-unsupported dtype gets a clear message.
bool is_known_dtype(const std::string& dtype) {
  static const std::set<std::string> known = {"BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ",
                                              "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
                                              "C64", "F64", "I64", "U64", "F4", "F6_E2M3", "F6_E3M2"};
  return known.count(dtype) != 0;
}

TensorType parse_dtype(const std::string& dtype, const std::string& path, const std::string& name) {
  if (dtype == "F32") return TensorType::F32;
  if (dtype == "F16") return TensorType::F16;
  if (dtype == "BF16") return TensorType::BF16;
  if (dtype == "I32") return TensorType::I32;
  if (dtype == "I64") return TensorType::I64;
  if (dtype == "U8") return TensorType::U8;
  if (is_known_dtype(dtype)) {
    throw file_error(path, "tensor " + name + " has dtype " + dtype +
                               ", which llmpress does not read (F32, F16, BF16, I32, I64 and U8 only)");
  }
  throw file_error(path, "tensor " + name + " has unknown dtype \"" + dtype + "\"");
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

int64_t json_dim(const json& value, const std::string& path, const std::string& what) {
  if (!value.is_number_unsigned() && !(value.is_number_integer() && value.get<int64_t>() >= 0)) {
    throw file_error(path, what + " must be a non-negative integer, got " + json_excerpt(value));
  }
  const uint64_t v = value.get<uint64_t>();
  if (v > uint64_t(kMaxDimension)) throw file_error(path, what + " " + std::to_string(v) + " is out of range");
  return int64_t(v);
}

RawTensor parse_entry(const std::string& name, const json& entry, const std::string& path) {
  if (!entry.is_object()) throw file_error(path, "header entry for " + name + " is not an object");
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(key)) throw file_error(path, "header entry for " + name + " has no \"" + key + "\"");
  }
  if (!entry["dtype"].is_string()) throw file_error(path, "dtype of " + name + " is not a string");
  RawTensor t;
  t.name = name;
  t.file = path;
  t.type = parse_dtype(entry["dtype"].get<std::string>(), path, name);
  const json& shape = entry["shape"];
  if (!shape.is_array()) throw file_error(path, "shape of " + name + " is not a list");
  uint64_t numel = 1;
  for (const json& d : shape) {
    const int64_t dim = json_dim(d, path, "a dimension of " + name);
    t.shape.push_back(dim);
    // Every dim is < 2^48; stop as soon as the product could overflow.
    if (dim != 0 && numel > uint64_t(kMaxDimension) / uint64_t(dim)) {
      throw file_error(path, "shape of " + name + " has too many elements");
    }
    numel *= uint64_t(dim);
  }
  const json& offsets = entry["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2) {
    throw file_error(path, "data_offsets of " + name + " must be a list [begin, end]");
  }
  const int64_t begin = json_dim(offsets[0], path, "data_offsets begin of " + name);
  const int64_t end = json_dim(offsets[1], path, "data_offsets end of " + name);
  if (end < begin) throw file_error(path, "data_offsets of " + name + " end before they begin");
  t.nbytes = uint64_t(end - begin);
  const uint64_t expected = tensor_bytes(t.type, numel);
  if (t.nbytes != expected) {
    throw file_error(path, "tensor " + name + " has " + std::to_string(t.nbytes) + " bytes but its shape and dtype need " +
                               std::to_string(expected));
  }
  t.data = reinterpret_cast<const uint8_t*>(uintptr_t(begin));  // relative for now; rebased by the caller
  return t;
}

}  // namespace

SafetensorsFile read_safetensors(const std::string& path) {
  auto file = MappedFile::open(path);
  file->require(0, 8, "the 8-byte header length");
  const uint64_t header_len = read_u64_le(file->data());
  if (header_len > kMaxHeaderBytes) {
    throw file_error(path, "header length " + std::to_string(header_len) +
                               " exceeds the 100 MB limit (not a safetensors file?)");
  }
  file->require(8, header_len, "the JSON header (length " + std::to_string(header_len) + ")");
  const char* text = reinterpret_cast<const char*>(file->data() + 8);
  if (header_len == 0 || text[0] != '{') throw file_error(path, "the header does not start with '{' (not a safetensors file?)");

  // Parse with a callback that rejects duplicate keys in the top-level object.
  std::set<std::string> seen;
  std::string duplicate;
  json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && !seen.insert(parsed.get<std::string>()).second) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json header = json::parse(text, text + header_len, on_event, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) throw file_error(path, "the header is not valid JSON");
  if (!duplicate.empty()) throw file_error(path, "tensor name \"" + duplicate + "\" appears twice in the header");

  SafetensorsFile result;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) throw file_error(path, "__metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) throw file_error(path, "__metadata__ value for " + m.key() + " is not a string");
        result.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    result.tensors.push_back(parse_entry(it.key(), *it, path));
  }

  // Tensors must tile the data buffer from 0 to the end of file, with no holes or overlaps.
  std::sort(result.tensors.begin(), result.tensors.end(),
            [](const RawTensor& a, const RawTensor& b) { return uintptr_t(a.data) < uintptr_t(b.data); });
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file->size() - data_start;
  uint64_t cursor = 0;
  for (RawTensor& t : result.tensors) {
    const uint64_t begin = uintptr_t(t.data);
    if (begin < cursor) throw file_error(path, "tensor " + t.name + " overlaps the previous tensor's bytes");
    if (begin > cursor) {
      throw file_error(path, "there are unused bytes [" + std::to_string(cursor) + ", " + std::to_string(begin) +
                                 ") in the data buffer before tensor " + t.name);
    }
    if (t.nbytes > data_size - begin) {
      throw file_error(path, "tensor " + t.name + " needs data bytes [" + std::to_string(begin) + ", " +
                                 std::to_string(begin + t.nbytes) + ") but the data buffer has " +
                                 std::to_string(data_size) + " bytes (truncated file?)");
    }
    cursor = begin + t.nbytes;
    t.data = file->data() + data_start + begin;
    t.mapping = file;
  }
  if (cursor != data_size) {
    throw file_error(path, "the file has " + std::to_string(data_size - cursor) +
                               " bytes after the last tensor (corrupt or wrong header)");
  }
  return result;
}

std::map<std::string, RawTensor> read_safetensors_index(const std::string& index_path) {
  std::ifstream in(index_path, std::ios::binary);
  if (!in) throw file_error(index_path, "cannot open");
  std::stringstream text;
  text << in.rdbuf();
  json index = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object()) throw file_error(index_path, "is not valid JSON");
  if (!index.contains("weight_map") || !index["weight_map"].is_object()) {
    throw file_error(index_path, "has no \"weight_map\" object");
  }
  const json& weight_map = index["weight_map"];
  std::map<std::string, std::vector<std::string>> names_by_shard;
  for (auto it = weight_map.begin(); it != weight_map.end(); ++it) {
    if (!it->is_string()) throw file_error(index_path, "weight_map entry for " + it.key() + " is not a file name");
    const std::string shard = it->get<std::string>();
    // Shards must be plain file names beside the index, never paths elsewhere.
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
      throw file_error(index_path, "weight_map names shard \"" + shard + "\", which is not a plain file name");
    }
    names_by_shard[shard].push_back(it.key());
  }
  const std::filesystem::path dir = std::filesystem::path(index_path).parent_path();
  std::map<std::string, RawTensor> tensors;
  for (const auto& [shard, names] : names_by_shard) {
    const std::string shard_path = (dir / shard).string();
    SafetensorsFile file = read_safetensors(shard_path);
    std::map<std::string, RawTensor*> by_name;
    for (RawTensor& t : file.tensors) by_name[t.name] = &t;
    for (const std::string& name : names) {
      auto found = by_name.find(name);
      if (found == by_name.end()) {
        throw file_error(index_path, "weight_map puts " + name + " in " + shard + ", but that shard does not contain it");
      }
      tensors[name] = *found->second;
    }
  }
  return tensors;
}

}  // namespace llmpress

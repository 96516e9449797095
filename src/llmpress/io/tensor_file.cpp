#include "llmpress/io/tensor_file.h"

#include <cstdio>
#include <cstring>

#include "llmpress/core/error.h"
#include "llmpress/io/atomic_file.h"
#include "llmpress/io/mapped_file.h"

namespace llmpress {

namespace {

// The dtypes work files hold, by name (never by enum value: those are not a stable format).
const std::map<std::string, at::ScalarType>& dtypes() {
  static const std::map<std::string, at::ScalarType> names = {
      {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf}, {"BF16", at::kBFloat16}, {"I64", at::kLong},
      {"I32", at::kInt},    {"I16", at::kShort}, {"I8", at::kChar},  {"U8", at::kByte},       {"BOOL", at::kBool}};
  return names;
}

std::string dtype_name(at::ScalarType type, const std::string& tensor) {
  for (const auto& [name, t] : dtypes())
    if (t == type) return name;
  throw Error("work file: tensor " + tensor + " has dtype " + std::string(c10::toString(type)) + ", which is not saved");
}

// A 64-bit checksum of a tensor's bytes (eight bytes at a time, multiply-xorshift mixing): cheap
// next to the disk, and it catches flipped bytes in a work file of the right size.
uint64_t checksum(const uint8_t* data, uint64_t size) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ size;
  const auto mix = [&](uint64_t v) {
    h ^= v * 0xBF58476D1CE4E5B9ull;
    h = (h << 31 | h >> 33) * 0x94D049BB133111EBull;
  };
  uint64_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t v;
    std::memcpy(&v, data + i, 8);
    mix(v);
  }
  uint64_t tail = 0;
  if (size > i) std::memcpy(&tail, data + i, size - i);
  mix(tail);
  return h ^ (h >> 29);
}

std::string hex(uint64_t v) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", (unsigned long long)v);
  return text;
}

}  // namespace

void save_tensor_file(const std::string& path, const TensorMap& tensors, const nlohmann::json& metadata) {
  nlohmann::json header = {{"metadata", metadata}, {"tensors", nlohmann::json::object()}};
  std::vector<at::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined()) throw Error("work file " + path + ": tensor " + name + " is undefined");
    const at::Tensor cpu = tensor.to(at::kCPU).contiguous();
    const uint64_t bytes = uint64_t(cpu.numel()) * cpu.element_size();
    header["tensors"][name] = {{"dtype", dtype_name(cpu.scalar_type(), name)}, {"shape", cpu.sizes().vec()},
                               {"offset", offset}, {"bytes", bytes},
                               {"checksum", hex(checksum(static_cast<const uint8_t*>(cpu.data_ptr()), bytes))}};
    offset += bytes;
    data.push_back(cpu);
  }
  const std::string text = header.dump();
  const uint64_t length = text.size();
  AtomicFile file(path);
  file.write(&length, sizeof length);
  file.write(text);
  for (const at::Tensor& t : data) file.write(t.data_ptr(), size_t(t.numel()) * t.element_size());
  file.commit();
}

TensorMap load_tensor_file(const std::string& path, const at::Device& device, nlohmann::json* metadata) {
  const std::shared_ptr<MappedFile> mapping = MappedFile::open(path);
  const MappedFile& file = *mapping;
  const uint64_t size = file.size();
  uint64_t length = 0;
  if (size < sizeof length) throw file_error(path, "truncated work file (no header)");
  std::memcpy(&length, file.data(), sizeof length);
  if (length > size - sizeof length) throw file_error(path, "truncated work file header");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(reinterpret_cast<const char*>(file.data()) + sizeof length,
                                   reinterpret_cast<const char*>(file.data()) + sizeof length + length);
  } catch (const nlohmann::json::exception& e) {
    throw file_error(path, std::string("bad work file header: ") + e.what());
  }
  if (!header.is_object() || !header.contains("tensors") || !header["tensors"].is_object())
    throw file_error(path, "work file header has no tensor table");
  const uint64_t base = sizeof length + length;
  TensorMap tensors;
  try {
    for (const auto& [name, info] : header["tensors"].items()) {
      const uint64_t offset = info.at("offset").get<uint64_t>(), bytes = info.at("bytes").get<uint64_t>();
      if (offset > size - base || bytes > size - base - offset)
        throw file_error(path, "tensor " + name + " runs past the end of the file (the file is truncated)");
      const auto dtype = dtypes().find(info.at("dtype").get<std::string>());
      if (dtype == dtypes().end()) throw file_error(path, "tensor " + name + " has an unknown dtype");
      const auto shape = info.at("shape").get<std::vector<int64_t>>();
      uint64_t elements = 1;
      for (int64_t d : shape) {
        if (d < 0 || (d > 0 && elements > (uint64_t(1) << 48) / uint64_t(d)))
          throw file_error(path, "tensor " + name + " has a bad shape");
        elements *= uint64_t(d);
      }
      at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype->second));
      if (elements * t.element_size() != bytes) throw file_error(path, "tensor " + name + " has a bad size");
      const uint8_t* stored = file.data() + base + offset;
      if (info.at("checksum").get<std::string>() != hex(checksum(stored, bytes)))
        throw file_error(path, "tensor " + name + " is corrupt (its checksum does not match): the file was "
                               "damaged after it was written");
      std::memcpy(t.data_ptr(), stored, bytes);
      tensors[name] = device == at::Device(at::kCPU) ? t : t.to(device);
    }
  } catch (const nlohmann::json::exception& e) {
    throw file_error(path, std::string("bad work file tensor table: ") + e.what());
  }
  if (metadata) *metadata = header.value("metadata", nlohmann::json::object());
  return tensors;
}

}  // namespace llmpress

#include "llmpress/io/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>
#include <sstream>

#include "llmpress/core/error.h"
#include "llmpress/io/mapped_file.h"
#include "llmpress/io/tensor_data.h"

namespace llmpress {

namespace {

constexpr uint64_t kMaxStringBytes = uint64_t(1) << 30;  // ggml's caps
constexpr uint64_t kMaxArrayElements = uint64_t(1) << 30;
constexpr uint32_t kMaxDims = 4;

// Payload size of a scalar metadata type (0 for STRING/ARRAY, which have their own encoding).
uint64_t scalar_size(GgufType type) {
  switch (type) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
    default: return 0;
  }
}

// Bounds-checked cursor over the mapping. Every read states what it reads, for the error message.
class Reader {
 public:
  explicit Reader(const MappedFile& file) : file_(file) {}
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return file_.size() - pos_; }

  const uint8_t* take(uint64_t n, const std::string& what) {
    file_.require(pos_, n, what);
    const uint8_t* p = file_.data() + pos_;
    pos_ += n;
    return p;
  }
  uint64_t uint(unsigned bytes, const std::string& what) {
    const uint8_t* p = take(bytes, what);
    uint64_t v = 0;
    for (int i = int(bytes) - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
  }
  uint32_t u32(const std::string& what) { return uint32_t(uint(4, what)); }
  uint64_t u64(const std::string& what) { return uint(8, what); }
  std::string string(const std::string& what) {
    const uint64_t len = u64("the length of " + what);
    if (len > kMaxStringBytes || len > remaining()) {
      fail(what + " claims " + std::to_string(len) + " bytes but only " + std::to_string(remaining()) + " remain");
    }
    const uint8_t* p = take(len, what);
    return std::string(reinterpret_cast<const char*>(p), len);
  }
  // Refuses a count whose minimal encoding cannot fit in the remaining bytes (so it never allocates for it).
  void check_count(uint64_t count, uint64_t min_bytes_each, const std::string& what) {
    if (count > kMaxArrayElements || (min_bytes_each > 0 && count > remaining() / min_bytes_each)) {
      fail(what + " claims " + std::to_string(count) + " entries but only " + std::to_string(remaining()) +
           " bytes remain (corrupt or truncated file)");
    }
  }
  [[noreturn]] void fail(const std::string& problem) const {
    throw file_error(file_.path(), problem + " (at byte " + std::to_string(pos_) + ")");
  }

 private:
  const MappedFile& file_;
  uint64_t pos_ = 0;
};

GgufType read_value_type(Reader& r, const std::string& what) {
  const uint32_t t = r.u32("the value type of " + what);
  if (t > uint32_t(GgufType::FLOAT64)) r.fail(what + " has unknown value type " + std::to_string(t));
  return GgufType(t);
}

// Reads one scalar of `type` into value (int_value / float_value / string_value).
void read_scalar(Reader& r, GgufType type, GgufValue& value, const std::string& what) {
  switch (type) {
    case GgufType::UINT8: value.int_value = int64_t(r.uint(1, what)); break;
    case GgufType::INT8: value.int_value = int8_t(r.uint(1, what)); break;
    case GgufType::UINT16: value.int_value = int64_t(r.uint(2, what)); break;
    case GgufType::INT16: value.int_value = int16_t(r.uint(2, what)); break;
    case GgufType::UINT32: value.int_value = int64_t(r.uint(4, what)); break;
    case GgufType::INT32: value.int_value = int32_t(r.uint(4, what)); break;
    case GgufType::UINT64: case GgufType::INT64: value.int_value = int64_t(r.u64(what)); break;
    case GgufType::BOOL: value.int_value = r.uint(1, what) != 0; break;
    case GgufType::FLOAT32: {
      const uint32_t bits = r.u32(what);
      float f;
      std::memcpy(&f, &bits, 4);
      value.float_value = f;
      break;
    }
    case GgufType::FLOAT64: {
      const uint64_t bits = r.u64(what);
      double d;
      std::memcpy(&d, &bits, 8);
      value.float_value = d;
      break;
    }
    case GgufType::STRING: value.string_value = r.string(what); break;
    case GgufType::ARRAY: r.fail(what + " is an array inside an array (nested arrays are not supported)");
  }
}

GgufValue read_value(Reader& r, GgufType type, const std::string& what) {
  GgufValue value;
  value.type = type;
  if (type != GgufType::ARRAY) {
    read_scalar(r, type, value, what);
    return value;
  }
  value.array_type = read_value_type(r, "the elements of " + what);
  if (value.array_type == GgufType::ARRAY) r.fail(what + " is an array of arrays (nested arrays are not supported)");
  const uint64_t count = r.u64("the element count of " + what);
  const uint64_t min_each = value.array_type == GgufType::STRING ? 8 : scalar_size(value.array_type);
  r.check_count(count, min_each, what);
  GgufValue element;
  if (value.array_type == GgufType::STRING) {
    value.strings.reserve(count);
    for (uint64_t i = 0; i < count; ++i) value.strings.push_back(r.string(what + "[" + std::to_string(i) + "]"));
  } else if (value.array_type == GgufType::FLOAT32 || value.array_type == GgufType::FLOAT64) {
    value.floats.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      read_scalar(r, value.array_type, element, what);
      value.floats.push_back(element.float_value);
    }
  } else {
    value.ints.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      read_scalar(r, value.array_type, element, what);
      value.ints.push_back(element.int_value);
    }
  }
  return value;
}

GgufTensorInfo read_tensor_info(Reader& r, uint64_t index) {
  GgufTensorInfo info;
  const std::string what = "tensor info " + std::to_string(index);
  info.name = r.string("the name of " + what);
  const std::string label = "tensor " + info.name;
  const uint32_t n_dims = r.u32("the dimension count of " + label);
  if (n_dims == 0 || n_dims > kMaxDims) {
    r.fail(label + " has " + std::to_string(n_dims) + " dimensions (GGUF allows 1 to 4)");
  }
  uint64_t numel = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    const uint64_t ne = r.u64("a dimension of " + label);
    if (ne > uint64_t(std::numeric_limits<int64_t>::max())) r.fail(label + " has a negative dimension");
    if (ne != 0 && numel > uint64_t(std::numeric_limits<int64_t>::max()) / ne) {
      r.fail(label + " has too many elements");
    }
    numel *= ne;
    info.ne.push_back(ne);
  }
  info.ggml_type = r.u32("the type of " + label);
  // Any type ggml defines parses (so `info` lists every tensor); gguf_to_checkpoint refuses the ones
  // llmpress cannot decode.
  const TensorTypeInfo* size = ggml_type_info(info.ggml_type);
  if (!size) {
    const std::string type = ggml_type_name(info.ggml_type);  // "unknown ggml type id 99" or "Q4_2 (removed ...)"
    r.fail(label + (type.rfind("unknown", 0) == 0 ? " has " + type
                                                  : " has type " + type + ", which GGUF files no longer hold"));
  }
  if (info.ne[0] % uint64_t(size->block_elements) != 0) {
    r.fail(label + " has a first dimension of " + std::to_string(info.ne[0]) + ", not a multiple of the " +
           size->name + " block size " + std::to_string(size->block_elements));
  }
  const uint64_t blocks = numel / uint64_t(size->block_elements);
  if (blocks > std::numeric_limits<uint64_t>::max() / uint64_t(size->block_bytes)) r.fail(label + " is too large");
  info.nbytes = blocks * uint64_t(size->block_bytes);
  info.offset = r.u64("the data offset of " + label);
  return info;
}

uint64_t align_up(uint64_t offset, uint64_t alignment) { return offset + (alignment - offset % alignment) % alignment; }

}  // namespace

const char* gguf_type_name(GgufType type) {
  static const char* names[] = {"UINT8", "INT8",   "UINT16", "INT16", "UINT32", "INT32",  "FLOAT32",
                                "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64", "FLOAT64"};
  const uint32_t t = uint32_t(type);
  return t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}

bool GgufValue::is_integer() const {
  return type != GgufType::BOOL && type != GgufType::ARRAY && type != GgufType::STRING && !is_float();
}
bool GgufValue::is_float() const { return type == GgufType::FLOAT32 || type == GgufType::FLOAT64; }
uint64_t GgufValue::array_size() const { return strings.size() + ints.size() + floats.size(); }

std::string GgufValue::to_display_string() const {
  std::ostringstream out;
  switch (type) {
    case GgufType::STRING: return string_value.size() > 200 ? string_value.substr(0, 200) + "..." : string_value;
    case GgufType::BOOL: return int_value ? "true" : "false";
    case GgufType::FLOAT32: case GgufType::FLOAT64: out << float_value; return out.str();
    case GgufType::ARRAY: out << "[" << array_size() << " x " << gguf_type_name(array_type) << "]"; return out.str();
    default: return std::to_string(int_value);
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  for (const auto& [k, v] : metadata)
    if (k == key) return &v;
  return nullptr;
}

GgufFile read_gguf(const std::string& path) {
  GgufFile gguf;
  gguf.file = MappedFile::open(path);
  const MappedFile& file = *gguf.file;
  Reader r(file);
  const uint8_t* magic = r.take(4, "the GGUF magic");
  if (std::memcmp(magic, "GGUF", 4) != 0) r.fail("does not start with the GGUF magic");
  gguf.version = r.u32("the GGUF version");
  if (gguf.version == 1) r.fail("is GGUF version 1, which is no longer supported; re-convert it with a current llama.cpp");
  if ((gguf.version & 0xffff) == 0) r.fail("has GGUF version " + std::to_string(gguf.version) + " (a big-endian file? only little-endian is supported)");
  if (gguf.version != 2 && gguf.version != 3) r.fail("has unsupported GGUF version " + std::to_string(gguf.version));
  const uint64_t tensor_count = r.u64("the tensor count");
  const uint64_t kv_count = r.u64("the metadata count");
  // Minimal encodings: a KV is key length (8) + type (4) + a 1-byte value; a tensor info is
  // name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8).
  r.check_count(kv_count, 13, "the metadata count");
  std::set<std::string> keys;
  gguf.metadata.reserve(kv_count);
  for (uint64_t i = 0; i < kv_count; ++i) {
    std::string key = r.string("metadata key " + std::to_string(i));
    if (key.empty()) r.fail("metadata key " + std::to_string(i) + " is empty");
    if (!keys.insert(key).second) r.fail("metadata key " + key + " appears twice");
    const GgufType type = read_value_type(r, key);
    GgufValue value = read_value(r, type, key);
    gguf.metadata.emplace_back(std::move(key), std::move(value));
  }
  if (const GgufValue* alignment = gguf.find("general.alignment")) {
    if (alignment->type != GgufType::UINT32) r.fail("general.alignment must be a UINT32");
    const uint64_t a = uint64_t(alignment->int_value);
    if (a == 0 || (a & (a - 1)) != 0) r.fail("general.alignment " + std::to_string(a) + " is not a power of two");
    gguf.alignment = a;
  }
  r.check_count(tensor_count, 32, "the tensor count");
  std::set<std::string> names;
  gguf.tensors.reserve(tensor_count);
  for (uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensorInfo info = read_tensor_info(r, i);
    if (!names.insert(info.name).second) r.fail("tensor name " + info.name + " appears twice");
    gguf.tensors.push_back(std::move(info));
  }
  gguf.data_start = align_up(r.pos(), gguf.alignment);

  // Every tensor must be aligned, lie inside the file and not overlap another one.
  std::vector<const GgufTensorInfo*> by_offset;
  for (const GgufTensorInfo& t : gguf.tensors) {
    if (t.offset % gguf.alignment != 0) {
      throw file_error(path, "tensor " + t.name + " has offset " + std::to_string(t.offset) +
                                 ", not a multiple of the alignment " + std::to_string(gguf.alignment));
    }
    if (gguf.data_start > file.size() || t.offset > file.size() - gguf.data_start ||
        t.nbytes > file.size() - gguf.data_start - t.offset) {
      throw file_error(path, "tensor " + t.name + " needs bytes [" + std::to_string(gguf.data_start) + "+" +
                                 std::to_string(t.offset) + ", +" + std::to_string(t.nbytes) +
                                 ") but the file has " + std::to_string(file.size()) + " bytes (truncated file?)");
    }
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& prev = *by_offset[i - 1];
    if (by_offset[i]->offset < prev.offset + prev.nbytes) {
      throw file_error(path, "tensor " + by_offset[i]->name + " overlaps tensor " + prev.name);
    }
  }
  return gguf;
}

}  // namespace llmpress

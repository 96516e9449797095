#include "llmpress/export/gguf_writer.h"

#include <cstring>
#include <set>

#include "llmpress/core/error.h"
#include "llmpress/export/ggml_quantize.h"
#include "llmpress/io/atomic_file.h"

namespace llmpress {
namespace {

constexpr uint32_t kGgufVersion = 3;
constexpr int kMaxDims = 4;  // GGML_MAX_DIMS

// Little-endian appends (the host is little-endian; GGUF big-endian files are not written).
template <typename T>
void put(std::vector<uint8_t>& out, T value) {
  uint8_t bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.insert(out.end(), bytes, bytes + sizeof(T));
}

void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

uint64_t align_up(uint64_t offset, uint64_t alignment) { return offset + (alignment - offset % alignment) % alignment; }

template <typename T>
void put_array(std::vector<uint8_t>& out, GgufType element, const std::vector<T>& values) {
  put<uint32_t>(out, uint32_t(element));
  put<uint64_t>(out, values.size());
  for (const T& v : values) put<T>(out, v);
}

}  // namespace

std::vector<uint8_t>& GgufWriter::new_key(const std::string& key, GgufType type) {
  if (key.empty()) throw Error("GGUF metadata key is empty");
  if (has_key(key)) throw Error("GGUF metadata key '" + key + "' set twice");
  kvs_.push_back({key, {}});
  put<uint32_t>(kvs_.back().encoded, uint32_t(type));
  return kvs_.back().encoded;
}

bool GgufWriter::has_key(const std::string& key) const {
  for (const KeyValue& kv : kvs_)
    if (kv.key == key) return true;
  return false;
}

void GgufWriter::set_u8(const std::string& key, uint8_t v) { put(new_key(key, GgufType::UINT8), v); }
void GgufWriter::set_i8(const std::string& key, int8_t v) { put(new_key(key, GgufType::INT8), v); }
void GgufWriter::set_u16(const std::string& key, uint16_t v) { put(new_key(key, GgufType::UINT16), v); }
void GgufWriter::set_i16(const std::string& key, int16_t v) { put(new_key(key, GgufType::INT16), v); }
void GgufWriter::set_u32(const std::string& key, uint32_t v) { put(new_key(key, GgufType::UINT32), v); }
void GgufWriter::set_i32(const std::string& key, int32_t v) { put(new_key(key, GgufType::INT32), v); }
void GgufWriter::set_u64(const std::string& key, uint64_t v) { put(new_key(key, GgufType::UINT64), v); }
void GgufWriter::set_i64(const std::string& key, int64_t v) { put(new_key(key, GgufType::INT64), v); }
void GgufWriter::set_f32(const std::string& key, float v) { put(new_key(key, GgufType::FLOAT32), v); }
void GgufWriter::set_f64(const std::string& key, double v) { put(new_key(key, GgufType::FLOAT64), v); }
void GgufWriter::set_bool(const std::string& key, bool v) { put<uint8_t>(new_key(key, GgufType::BOOL), v ? 1 : 0); }
void GgufWriter::set_string(const std::string& key, const std::string& v) {
  put_string(new_key(key, GgufType::STRING), v);
}

void GgufWriter::set_array_u8(const std::string& key, const std::vector<uint8_t>& v) {
  put_array(new_key(key, GgufType::ARRAY), GgufType::UINT8, v);
}
void GgufWriter::set_array_i8(const std::string& key, const std::vector<int8_t>& v) {
  put_array(new_key(key, GgufType::ARRAY), GgufType::INT8, v);
}
void GgufWriter::set_array_u16(const std::string& key, const std::vector<uint16_t>& v) {
  put_array(new_key(key, GgufType::ARRAY), GgufType::UINT16, v);
}
void GgufWriter::set_array_i16(const std::string& key, const std::vector<int16_t>& v) {
  put_array(new_key(key, GgufType::ARRAY), GgufType::INT16, v);
}
void GgufWriter::set_array_u32(const std::string& key, const std::vector<uint32_t>& v) {
  put_array(new_key(key, GgufType::ARRAY), GgufType::UINT32, v);
}
void GgufWriter::set_array_i32(const std::string& key, const std::vector<int32_t>& v) {
  put_array(new_key(key, GgufType::ARRAY), GgufType::INT32, v);
}
void GgufWriter::set_array_u64(const std::string& key, const std::vector<uint64_t>& v) {
  put_array(new_key(key, GgufType::ARRAY), GgufType::UINT64, v);
}
void GgufWriter::set_array_i64(const std::string& key, const std::vector<int64_t>& v) {
  put_array(new_key(key, GgufType::ARRAY), GgufType::INT64, v);
}
void GgufWriter::set_array_f32(const std::string& key, const std::vector<float>& v) {
  put_array(new_key(key, GgufType::ARRAY), GgufType::FLOAT32, v);
}
void GgufWriter::set_array_f64(const std::string& key, const std::vector<double>& v) {
  put_array(new_key(key, GgufType::ARRAY), GgufType::FLOAT64, v);
}
void GgufWriter::set_array_bool(const std::string& key, const std::vector<bool>& v) {
  std::vector<uint8_t>& out = new_key(key, GgufType::ARRAY);
  put<uint32_t>(out, uint32_t(GgufType::BOOL));
  put<uint64_t>(out, v.size());
  for (bool b : v) put<uint8_t>(out, b ? 1 : 0);
}
void GgufWriter::set_array_string(const std::string& key, const std::vector<std::string>& v) {
  std::vector<uint8_t>& out = new_key(key, GgufType::ARRAY);
  put<uint32_t>(out, uint32_t(GgufType::STRING));
  put<uint64_t>(out, v.size());
  for (const std::string& s : v) put_string(out, s);
}

void GgufWriter::add_tensor(const std::string& name, TensorType type, const std::vector<int64_t>& shape,
                            std::function<std::vector<uint8_t>()> produce) {
  if (name.empty()) throw Error("GGUF tensor name is empty");
  if (name.size() > kMaxTensorName)
    throw Error("GGUF tensor name '" + name + "' is " + std::to_string(name.size()) +
                " bytes; ggml accepts at most 63");
  for (const TensorEntry& t : tensors_)
    if (t.name == name) throw Error("GGUF tensor '" + name + "' added twice");
  if (shape.empty() || shape.size() > size_t(kMaxDims))
    throw Error("GGUF tensor '" + name + "' has " + std::to_string(shape.size()) + " dimensions; GGUF allows 1 to 4");
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
  uint64_t nbytes = 0;
  try {
    nbytes = ggml_encoded_bytes(type, shape.back(), rows);  // also checks ne[0] against the block size
  } catch (const Error& e) {
    throw Error("GGUF tensor '" + name + "': " + e.what());
  }
  tensors_.push_back({name, type, shape, nbytes, std::move(produce)});
}

void GgufWriter::add_tensor_bytes(const std::string& name, TensorType type, const std::vector<int64_t>& shape,
                                  std::vector<uint8_t> bytes) {
  auto shared = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  add_tensor(name, type, shape, [shared] { return *shared; });
}

void GgufWriter::write(const std::string& path) const {
  std::vector<uint8_t> head;
  head.insert(head.end(), {'G', 'G', 'U', 'F'});
  put<uint32_t>(head, kGgufVersion);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kvs_.size());
  for (const KeyValue& kv : kvs_) {
    put_string(head, kv.key);
    head.insert(head.end(), kv.encoded.begin(), kv.encoded.end());
  }
  // ggml demands offsets that are exactly contiguous in info order, each tensor padded to the alignment.
  uint64_t offset = 0;
  for (const TensorEntry& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, uint32_t(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) put<uint64_t>(head, uint64_t(*it));
    put<uint32_t>(head, uint32_t(t.type));
    put<uint64_t>(head, offset);
    offset += align_up(t.nbytes, kAlignment);
  }

  AtomicFile file(path);
  file.write(head.data(), head.size());
  file.write_zeros(align_up(head.size(), kAlignment) - head.size());
  for (const TensorEntry& t : tensors_) {
    const std::vector<uint8_t> bytes = t.produce();
    if (bytes.size() != t.nbytes)
      throw Error("GGUF tensor '" + t.name + "': produced " + std::to_string(bytes.size()) + " bytes, expected " +
                  std::to_string(t.nbytes));
    file.write(bytes.data(), bytes.size());
    file.write_zeros(align_up(t.nbytes, kAlignment) - t.nbytes);
  }
  file.commit();
}

}  // namespace llmpress

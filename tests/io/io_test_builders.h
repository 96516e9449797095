#pragma once
// Byte-level builders for the reader tests: hostile and valid model files are assembled in memory
// (independently of llmpress's own writers) and written to a temp dir.
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace llmpress::test {

struct Bytes {
  std::vector<uint8_t> b;
  void u8(uint8_t v) { b.push_back(v); }
  void uint(uint64_t v, int n) { for (int i = 0; i < n; ++i) b.push_back(uint8_t(v >> (8 * i))); }
  void u32(uint32_t v) { uint(v, 4); }
  void i32(int32_t v) { uint(uint32_t(v), 4); }
  void u64(uint64_t v) { uint(v, 8); }
  void f32(float f) { uint32_t x; std::memcpy(&x, &f, 4); u32(x); }
  void raw(const void* p, size_t n) { auto c = static_cast<const uint8_t*>(p); b.insert(b.end(), c, c + n); }
  void floats(const std::vector<float>& v) { raw(v.data(), v.size() * 4); }
  void gguf_string(const std::string& s) { u64(s.size()); raw(s.data(), s.size()); }
  void pad_to(size_t alignment) { while (b.size() % alignment) b.push_back(0); }
  size_t size() const { return b.size(); }
};

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes, size_t length = SIZE_MAX) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(std::min(length, bytes.size())));
}
inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

inline std::vector<uint8_t> float_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> out(v.size() * 4);
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

// ---- GGUF ----
enum GgufT : uint32_t { G_U8 = 0, G_I8, G_U16, G_I16, G_U32, G_I32, G_F32, G_BOOL, G_STR, G_ARR, G_U64, G_I64, G_F64 };

struct GgufBuilder {
  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    std::vector<uint8_t> data;
  };
  Bytes kv;
  uint64_t kv_count = 0;
  std::vector<Tensor> tensors;
  uint32_t alignment = 32;

  void key(const std::string& k, uint32_t type) { kv.gguf_string(k); kv.u32(type); ++kv_count; }
  void u32(const std::string& k, uint32_t v) { key(k, G_U32); kv.u32(v); }
  void f32(const std::string& k, float v) { key(k, G_F32); kv.f32(v); }
  void boolean(const std::string& k, bool v) { key(k, G_BOOL); kv.u8(v); }
  void str(const std::string& k, const std::string& v) { key(k, G_STR); kv.gguf_string(v); }
  void str_array(const std::string& k, const std::vector<std::string>& v) {
    key(k, G_ARR); kv.u32(G_STR); kv.u64(v.size());
    for (auto& s : v) kv.gguf_string(s);
  }
  void f32_array(const std::string& k, const std::vector<float>& v) {
    key(k, G_ARR); kv.u32(G_F32); kv.u64(v.size());
    for (float f : v) kv.f32(f);
  }
  void i32_array(const std::string& k, const std::vector<int32_t>& v) {
    key(k, G_ARR); kv.u32(G_I32); kv.u64(v.size());
    for (int32_t x : v) kv.i32(x);
  }
  // `shape` in PyTorch order; stored reversed as ggml's ne.
  void tensor(const std::string& name, std::vector<int64_t> shape, uint32_t type, std::vector<uint8_t> data) {
    std::vector<uint64_t> ne(shape.rbegin(), shape.rend());
    tensors.push_back({name, ne, type, std::move(data)});
  }
  void f32_tensor(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& v) {
    tensor(name, shape, 0, float_bytes(v));
  }
  // No padding after the last tensor, so that every strict prefix of the file is invalid.
  std::vector<uint8_t> build(uint32_t version = 3) const {
    Bytes out;
    out.raw("GGUF", 4);
    out.u32(version);
    out.u64(tensors.size());
    out.u64(kv_count);
    out.raw(kv.b.data(), kv.b.size());
    uint64_t offset = 0;
    for (const Tensor& t : tensors) {
      out.gguf_string(t.name);
      out.u32(uint32_t(t.ne.size()));
      for (uint64_t n : t.ne) out.u64(n);
      out.u32(t.type);
      out.u64(offset);
      offset += t.data.size();
      offset += (alignment - offset % alignment) % alignment;
    }
    out.pad_to(alignment);
    for (size_t i = 0; i < tensors.size(); ++i) {
      out.raw(tensors[i].data.data(), tensors[i].data.size());
      if (i + 1 < tensors.size()) out.pad_to(alignment);
    }
    return out.b;
  }
};

// ---- safetensors ----
struct SafetensorsBuilder {
  struct Tensor { std::string name, dtype; std::vector<int64_t> shape; std::vector<uint8_t> data; };
  std::vector<Tensor> tensors;
  void add(const std::string& name, const std::string& dtype, std::vector<int64_t> shape, std::vector<uint8_t> data) {
    tensors.push_back({name, dtype, std::move(shape), std::move(data)});
  }
  void f32(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& v) {
    add(name, "F32", std::move(shape), float_bytes(v));
  }
  nlohmann::json header() const {
    nlohmann::json h = nlohmann::json::object();
    uint64_t offset = 0;
    for (const Tensor& t : tensors) {
      h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.data.size()}}};
      offset += t.data.size();
    }
    h["__metadata__"] = {{"format", "pt"}};
    return h;
  }
  static std::vector<uint8_t> assemble(const std::string& header_text, const std::vector<uint8_t>& data) {
    Bytes out;
    std::string text = header_text;
    while (text.size() % 8) text += ' ';
    out.u64(text.size());
    out.raw(text.data(), text.size());
    out.raw(data.data(), data.size());
    return out.b;
  }
  std::vector<uint8_t> data() const {
    std::vector<uint8_t> d;
    for (const Tensor& t : tensors) d.insert(d.end(), t.data.begin(), t.data.end());
    return d;
  }
  std::vector<uint8_t> build() const { return assemble(header().dump(), data()); }
};

// ---- a tiny Llama, its weights in Hugging Face layout ----
struct TinyLlama {
  int64_t vocab = 6, dim = 8, hidden = 12, layers = 2, heads = 2, kv_heads = 1;
  bool tied = false;
  int64_t head_dim() const { return dim / heads; }
  std::vector<std::string> order;  // HF names in creation order
  std::map<std::string, std::vector<int64_t>> shapes;
  std::map<std::string, std::vector<float>> hf;

  void add(const std::string& name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    // Distinct values everywhere, so any misplaced element shows.
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = float(order.size() + 1) + float(i) * 0.001f;
    order.push_back(name);
    shapes[name] = shape;
    hf[name] = v;
  }
  std::string layer(int64_t l, const std::string& rest) const { return "model.layers." + std::to_string(l) + "." + rest; }
  void build() {
    const int64_t hd = head_dim();
    add("model.embed_tokens.weight", {vocab, dim});
    for (int64_t l = 0; l < layers; ++l) {
      add(layer(l, "input_layernorm.weight"), {dim});
      add(layer(l, "self_attn.q_proj.weight"), {heads * hd, dim});
      add(layer(l, "self_attn.k_proj.weight"), {kv_heads * hd, dim});
      add(layer(l, "self_attn.v_proj.weight"), {kv_heads * hd, dim});
      add(layer(l, "self_attn.o_proj.weight"), {dim, heads * hd});
      add(layer(l, "post_attention_layernorm.weight"), {dim});
      add(layer(l, "mlp.gate_proj.weight"), {hidden, dim});
      add(layer(l, "mlp.up_proj.weight"), {hidden, dim});
      add(layer(l, "mlp.down_proj.weight"), {dim, hidden});
    }
    add("model.norm.weight", {dim});
    if (!tied) add("lm_head.weight", {vocab, dim});
  }
  // HF half-split -> Meta interleaved rows, written from the row formula (formats.md 1.12).
  static std::vector<float> interleave(const std::vector<float>& v, int64_t n_heads, int64_t rows) {
    const int64_t cols = int64_t(v.size()) / rows, d = rows / n_heads;
    std::vector<float> out(v.size());
    for (int64_t h = 0; h < n_heads; ++h)
      for (int64_t j = 0; j < d / 2; ++j)
        for (int64_t t = 0; t < 2; ++t)
          for (int64_t c = 0; c < cols; ++c)
            out[size_t((h * d + 2 * j + t) * cols + c)] = v[size_t((h * d + t * d / 2 + j) * cols + c)];
    return out;
  }
  // The tensor as stored by interleaved-RoPE formats (GGUF llama, llama2.c).
  std::vector<float> meta_layout(const std::string& name) const {
    const auto& s = shapes.at(name);
    if (name.find("q_proj") != std::string::npos) return interleave(hf.at(name), heads, s[0]);
    if (name.find("k_proj") != std::string::npos) return interleave(hf.at(name), kv_heads, s[0]);
    return hf.at(name);
  }
  nlohmann::json hf_config() const {
    return {{"model_type", "llama"}, {"architectures", {"LlamaForCausalLM"}}, {"vocab_size", vocab},
            {"hidden_size", dim}, {"intermediate_size", hidden}, {"num_hidden_layers", layers},
            {"num_attention_heads", heads}, {"num_key_value_heads", kv_heads}, {"rms_norm_eps", 1e-5},
            {"max_position_embeddings", 32}, {"tie_word_embeddings", tied}};
  }
};

}  // namespace llmpress::test

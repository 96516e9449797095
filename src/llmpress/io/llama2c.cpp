#include "llmpress/io/llama2c.h"

#include <cstring>
#include <filesystem>

#include "llmpress/core/error.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/io/mapped_file.h"

namespace llmpress {

namespace {

constexpr uint32_t kAk42Magic = 0x616b3432;
constexpr uint64_t kAk42HeaderBytes = 256;
constexpr int64_t kMaxValue = int64_t(1) << 24;  // far above any llama2.c model; keeps sizes from overflowing

int32_t read_i32(const uint8_t* p) {
  uint32_t v = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
  int32_t s;
  std::memcpy(&s, &v, 4);
  return s;
}

struct Header {
  int64_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

// Lays tensors out one after another in the file, in the order the format writes them.
class Layout {
 public:
  Layout(std::shared_ptr<MappedFile> file, uint64_t offset) : file_(std::move(file)), offset_(offset) {}
  uint64_t offset() const { return offset_; }
  void skip(uint64_t bytes) { offset_ += bytes; }
  RawTensor next(const std::string& name, std::vector<int64_t> shape) {
    RawTensor t;
    t.name = name;
    t.file = file_->path();
    t.type = TensorType::F32;
    t.shape = std::move(shape);
    t.nbytes = uint64_t(t.numel()) * 4;
    t.mapping = file_;
    // Pointers are set once the total size is known to match the file (see finish()).
    offsets_.push_back(offset_);
    offset_ += t.nbytes;
    return t;
  }
  const std::vector<uint64_t>& offsets() const { return offsets_; }

 private:
  std::shared_ptr<MappedFile> file_;
  uint64_t offset_;
  std::vector<uint64_t> offsets_;
};

std::string layer_name(int64_t layer, const std::string& rest) {
  return "model.layers." + std::to_string(layer) + "." + rest;
}

}  // namespace

std::string find_llama2c_tokenizer(const std::string& directory) {
  namespace fs = std::filesystem;
  const fs::path dir = directory.empty() ? fs::path(".") : fs::path(directory);
  if (fs::is_regular_file(dir / "tokenizer.bin")) return (dir / "tokenizer.bin").string();
  std::vector<std::string> candidates;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && name.rfind("tok", 0) == 0 && entry.path().extension() == ".bin") {
      candidates.push_back(entry.path().string());
    }
  }
  return candidates.size() == 1 ? candidates.front() : "";  // ambiguous: the user must pass --tokenizer
}

Checkpoint open_llama2c(const std::string& path, const std::string& tokenizer) {
  auto file = MappedFile::open(path);
  file->require(0, 28, "the llama2.c header (7 int32 values)");
  const uint8_t* p = file->data();
  const bool ak42 = uint32_t(read_i32(p)) == kAk42Magic;
  uint64_t header_bytes = 28;
  bool shared_classifier = false;
  int version = 0;
  if (ak42) {
    file->require(0, kAk42HeaderBytes, "the 256-byte llama2.c version header");
    version = read_i32(p + 4);
    if (version != 1) {
      throw file_error(path, "llama2.c format version " + std::to_string(version) +
                                 " is not supported (legacy and version 1 fp32 only; export with --version 1)");
    }
    p += 8;
    header_bytes = kAk42HeaderBytes;
  }
  Header h{read_i32(p), read_i32(p + 4), read_i32(p + 8), read_i32(p + 12), read_i32(p + 16), read_i32(p + 20), read_i32(p + 24)};
  if (ak42) {
    shared_classifier = file->data()[36] != 0;
  } else {
    // A negative vocab_size marks a separate classifier at the end.
    shared_classifier = h.vocab_size > 0;
    if (h.vocab_size < 0) h.vocab_size = -h.vocab_size;
  }
  const std::pair<const char*, int64_t> fields[] = {{"dim", h.dim}, {"hidden_dim", h.hidden_dim}, {"n_layers", h.n_layers},
                                                     {"n_heads", h.n_heads}, {"n_kv_heads", h.n_kv_heads},
                                                     {"vocab_size", h.vocab_size}, {"seq_len", h.seq_len}};
  for (const auto& [name, value] : fields) {
    if (value <= 0 || value > kMaxValue) {
      throw file_error(path, std::string("header field ") + name + " = " + std::to_string(value) +
                                 " is out of range (not a llama2.c checkpoint?)");
    }
  }
  if (h.dim % h.n_heads != 0) {
    throw file_error(path, "n_heads (" + std::to_string(h.n_heads) + ") does not divide dim (" + std::to_string(h.dim) + ")");
  }
  if (h.n_heads % h.n_kv_heads != 0) {
    throw file_error(path, "n_kv_heads (" + std::to_string(h.n_kv_heads) + ") does not divide n_heads (" +
                               std::to_string(h.n_heads) + ")");
  }
  const int64_t hs = h.dim / h.n_heads;
  const int64_t kv_dim = h.n_kv_heads * hs;

  Checkpoint ck;
  ck.path = path;
  ck.format = CheckpointFormat::Llama2c;
  ModelConfig& c = ck.config;
  c.architecture = "llama";
  c.vocab_size = h.vocab_size;
  c.hidden_size = h.dim;
  c.intermediate_size = h.hidden_dim;
  c.num_layers = h.n_layers;
  c.num_heads = h.n_heads;
  c.num_kv_heads = h.n_kv_heads;
  c.head_dim = hs;
  c.max_position_embeddings = h.seq_len;
  c.rms_norm_eps = 1e-5;   // run.c hard-codes both
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = shared_classifier;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  c.validate(path);
  ck.metadata["llama2c.version"] = ak42 ? std::to_string(version) : "legacy";

  Layout layout(file, header_bytes);
  std::vector<RawTensor> tensors;
  auto per_layer = [&](const std::string& rest, std::vector<int64_t> shape, int64_t rope_heads = 0) {
    for (int64_t l = 0; l < h.n_layers; ++l) {
      tensors.push_back(layout.next(layer_name(l, rest), shape));
      tensors.back().unpermute_rope_heads = rope_heads;  // llama2.c q/k use Meta's interleaved RoPE rows
    }
  };
  auto embedding = [&] { tensors.push_back(layout.next("model.embed_tokens.weight", {h.vocab_size, h.dim})); };
  auto norms = [&](bool final_norm_too) {
    per_layer("input_layernorm.weight", {h.dim});
    if (ak42) per_layer("post_attention_layernorm.weight", {h.dim});
    if (final_norm_too) tensors.push_back(layout.next("model.norm.weight", {h.dim}));
  };
  auto attention = [&] {
    per_layer("self_attn.q_proj.weight", {h.dim, h.dim}, h.n_heads);
    per_layer("self_attn.k_proj.weight", {kv_dim, h.dim}, h.n_kv_heads);
    per_layer("self_attn.v_proj.weight", {kv_dim, h.dim});
    per_layer("self_attn.o_proj.weight", {h.dim, h.dim});
  };
  auto mlp = [&] {
    per_layer("mlp.gate_proj.weight", {h.hidden_dim, h.dim});
    per_layer("mlp.down_proj.weight", {h.dim, h.hidden_dim});
    per_layer("mlp.up_proj.weight", {h.hidden_dim, h.dim});
  };
  if (ak42) {
    norms(/*final_norm_too=*/true);  // att norms, ffn norms, final norm
    embedding();
    attention();
    mlp();
  } else {
    embedding();
    per_layer("input_layernorm.weight", {h.dim});
    attention();
    per_layer("post_attention_layernorm.weight", {h.dim});
    mlp();
    tensors.push_back(layout.next("model.norm.weight", {h.dim}));
    layout.skip(uint64_t(h.seq_len) * uint64_t(hs / 2) * 4 * 2);  // legacy freq_cis_real/imag tables
  }
  if (!shared_classifier) tensors.push_back(layout.next("lm_head.weight", {h.vocab_size, h.dim}));

  // The header fixes the file size exactly; anything else means wrong format or a damaged file.
  if (layout.offset() != file->size()) {
    throw file_error(path, "a llama2.c checkpoint with this header (dim " + std::to_string(h.dim) + ", " +
                               std::to_string(h.n_layers) + " layers, vocab " + std::to_string(h.vocab_size) +
                               ") has " + std::to_string(layout.offset()) + " bytes, but the file has " +
                               std::to_string(file->size()) + " (truncated, or not a llama2.c file)");
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    tensors[i].data = file->data() + layout.offsets()[i];
    ck.tensors[tensors[i].name] = std::move(tensors[i]);
  }
  ck.tokenizer_file = tokenizer.empty() ? find_llama2c_tokenizer(std::filesystem::path(path).parent_path().string()) : tokenizer;
  return ck;
}

}  // namespace llmpress

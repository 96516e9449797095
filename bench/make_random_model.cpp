// Writes a random-init Llama model as a Hugging Face folder (F16 safetensors), for time and memory
// benchmarks of shapes we have no trained weights for. Default shape: TinyLlama-1.1B.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "llmpress/core/error.h"
#include "llmpress/export/gguf_writer.h"
#include "llmpress/export/safetensors_writer.h"
#include "llmpress/io/model_config.h"

// SentencePiece-style vocabulary: <unk>, <s>, </s>, the 256 byte tokens, then filler pieces.
// Text tokenizes to byte tokens, which is all a throughput benchmark needs.
llmpress::Vocab synthetic_vocab(int64_t size) {
  llmpress::Vocab v;
  v.model = "llama";
  v.pre = "default";
  for (int64_t i = 0; i < size; ++i) {
    char piece[16];
    if (i >= 3 && i < 259) std::snprintf(piece, sizeof piece, "<0x%02X>", int(i - 3));
    else std::snprintf(piece, sizeof piece, "filler%lld", (long long)i);
    v.tokens.push_back(i == 0 ? "<unk>" : i == 1 ? "<s>" : i == 2 ? "</s>" : piece);
    v.scores.push_back(i < 259 ? 0.0f : -float(i));
    v.types.push_back(i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1);
  }
  v.bos_id = 1;
  v.eos_id = 2;
  v.unk_id = 0;
  return v;
}

int main(int argc, char** argv) {
  llmpress::ModelConfig c;
  c.vocab_size = 32000;
  c.hidden_size = 2048;
  c.intermediate_size = 5632;
  c.num_layers = 22;
  c.num_heads = 32;
  c.num_kv_heads = 4;
  c.head_dim = 64;
  c.max_position_embeddings = 2048;
  c.rms_norm_eps = 1e-5;
  std::string out, gguf;
  uint64_t seed = 0;
  CLI::App app{"write a random-init Llama checkpoint (default: TinyLlama-1.1B shape) in F16 safetensors"};
  app.add_option("-o,--output", out, "output folder (Hugging Face, F16 safetensors)")->required();
  app.add_option("--gguf", gguf, "also write the same weights as an F32 GGUF with a synthetic vocabulary "
                                 "(byte tokens plus fillers), so llama.cpp can run it");
  app.add_option("--hidden", c.hidden_size)->capture_default_str();
  app.add_option("--intermediate", c.intermediate_size)->capture_default_str();
  app.add_option("--layers", c.num_layers)->capture_default_str();
  app.add_option("--heads", c.num_heads)->capture_default_str();
  app.add_option("--kv-heads", c.num_kv_heads)->capture_default_str();
  app.add_option("--vocab", c.vocab_size)->capture_default_str();
  app.add_option("--seed", seed)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  c.head_dim = c.hidden_size / c.num_heads;

  try {
    c.validate("make_random_model");
    at::manual_seed(seed);
    // Scaled like a trained model's weights (std 0.02) so activations stay in a realistic range.
    auto random = [](std::vector<int64_t> shape) { return (at::randn(shape) * 0.02).to(at::kHalf); };
    std::vector<llmpress::NamedTensor> tensors;
    tensors.push_back({"model.embed_tokens.weight", random({c.vocab_size, c.hidden_size})});
    const int64_t q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
    for (int64_t i = 0; i < c.num_layers; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      tensors.push_back({p + "input_layernorm.weight", at::ones({c.hidden_size}, at::kHalf)});
      tensors.push_back({p + "post_attention_layernorm.weight", at::ones({c.hidden_size}, at::kHalf)});
      tensors.push_back({p + "self_attn.q_proj.weight", random({q, c.hidden_size})});
      tensors.push_back({p + "self_attn.k_proj.weight", random({kv, c.hidden_size})});
      tensors.push_back({p + "self_attn.v_proj.weight", random({kv, c.hidden_size})});
      tensors.push_back({p + "self_attn.o_proj.weight", random({c.hidden_size, q})});
      tensors.push_back({p + "mlp.gate_proj.weight", random({c.intermediate_size, c.hidden_size})});
      tensors.push_back({p + "mlp.up_proj.weight", random({c.intermediate_size, c.hidden_size})});
      tensors.push_back({p + "mlp.down_proj.weight", random({c.hidden_size, c.intermediate_size})});
    }
    tensors.push_back({"model.norm.weight", at::ones({c.hidden_size}, at::kHalf)});
    tensors.push_back({"lm_head.weight", random({c.vocab_size, c.hidden_size})});
    llmpress::write_hf_checkpoint(out, c, tensors, {});
    if (!gguf.empty()) llmpress::write_gguf_model(gguf, c, tensors, synthetic_vocab(c.vocab_size), llmpress::TensorType::F32);
    std::printf("wrote %s (%lld parameters)\n", out.c_str(), (long long)c.parameter_count());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}

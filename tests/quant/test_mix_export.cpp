// A llama-quantize mix written by write_gguf_model_mix reads back through our own loader
// (so `llmpress perplexity` works on it) with the chosen per-tensor types.
#include <cmath>

#include "../export/export_test_util.h"
#include "llmpress/export/gguf_writer.h"
#include "llmpress/io/gguf.h"
#include "llmpress/tokenizer/tokenizer.h"
#include "test_util.h"

namespace llmpress {
namespace {

TEST(MixExport, GutenbergQ4_K_MReadsBack) {
  LLMPRESS_REQUIRE_SHARED("models/gutenberg-dev-llama-5m/model.safetensors");
  const Checkpoint checkpoint = open_checkpoint(test::shared_path("models/gutenberg-dev-llama-5m"));
  const Vocab vocab = load_tokenizer(checkpoint)->to_vocab();
  const std::vector<NamedTensor> tensors = test::load_all(checkpoint);
  test::TempDir dir;
  const std::string path = dir.file("q4km.gguf");
  const auto choices = write_gguf_model_mix(path, checkpoint.config, tensors, vocab, "Q4_K_M");
  std::map<std::string, TensorType> chosen;
  for (const GgufTensorChoice& c : choices) chosen[c.gguf_name] = c.type;
  EXPECT_EQ(chosen.at("blk.2.ffn_down.weight"), TensorType::Q6_K);
  EXPECT_EQ(chosen.at("blk.1.ffn_down.weight"), TensorType::Q4_K);
  EXPECT_EQ(chosen.at("output.weight"), TensorType::Q6_K);

  const Checkpoint back = open_checkpoint(path);
  for (const NamedTensor& t : tensors) {
    const at::Tensor original = t.tensor.to(at::kFloat);
    const at::Tensor loaded = back.load(t.name).to(at::kFloat);
    ASSERT_EQ(loaded.sizes(), original.sizes()) << t.name;
    const double rel = (loaded - original).norm().item<double>() / original.norm().item<double>();
    EXPECT_LT(rel, original.dim() == 1 ? 1e-7 : 0.12) << t.name;
  }
}

}  // namespace
}  // namespace llmpress

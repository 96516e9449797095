#include "llmpress/export/llama2c_writer.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "export_test_util.h"
#include "llmpress/core/error.h"
#include "test_util.h"

namespace llmpress {
namespace {

using test::slurp;

// stories260K.bin was written by llama2.c's own export: reading it (io reader, which converts q/k
// to the Hugging Face layout) and writing it back must reproduce the file.
TEST(Llama2cWriter, Stories260KRoundTrip) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const std::string original_path = test::shared_path("models/stories260K/stories260K.bin");
  const Checkpoint checkpoint = open_checkpoint(original_path);
  test::TempDir dir;
  write_llama2c(dir.file("out.bin"), checkpoint.config, test::load_all(checkpoint));
  const std::string original = slurp(original_path), ours = slurp(dir.file("out.bin"));
  ASSERT_EQ(ours.size(), original.size());
  const ModelConfig& c = checkpoint.config;
  // The freq_cis tables sit just before the (optional) classifier; compare them with a tolerance
  // (libm cos/sin may differ in the last bit), everything else exactly.
  const size_t table_floats = size_t(c.max_position_embeddings * (c.hidden_size / c.num_heads / 2)) * 2;
  const size_t tail = c.tie_word_embeddings ? 0 : size_t(c.vocab_size * c.hidden_size) * 4;
  const size_t table_start = original.size() - tail - table_floats * 4;
  EXPECT_EQ(ours.compare(0, table_start, original, 0, table_start), 0) << "weights or header differ";
  EXPECT_EQ(ours.compare(table_start + table_floats * 4, tail, original, table_start + table_floats * 4, tail), 0);
  std::vector<float> a(table_floats), b(table_floats);
  std::memcpy(a.data(), ours.data() + table_start, table_floats * 4);
  std::memcpy(b.data(), original.data() + table_start, table_floats * 4);
  size_t identical = 0;
  for (size_t i = 0; i < table_floats; ++i) {
    EXPECT_NEAR(a[i], b[i], 1e-6f) << i;
    identical += a[i] == b[i];
  }
  std::printf("  freq_cis: %zu of %zu floats bit-identical; whole file identical: %s\n", identical, table_floats,
              ours == original ? "yes" : "no");
}

TEST(Llama2cWriter, RefusesWhatTheFormatCannotExpress) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const Checkpoint checkpoint = open_checkpoint(test::shared_path("models/stories260K/stories260K.bin"));
  const std::vector<NamedTensor> tensors = test::load_all(checkpoint);
  test::TempDir dir;
  const auto message = [&](const ModelConfig& config) {
    try {
      write_llama2c(dir.file("x.bin"), config, tensors);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  ModelConfig theta = checkpoint.config;
  theta.rope_theta = 500000;
  EXPECT_NE(message(theta).find("theta 10000"), std::string::npos) << message(theta);
  ModelConfig head = checkpoint.config;
  head.head_dim = head.hidden_size / head.num_heads * 2;
  EXPECT_NE(message(head).find("head_dim"), std::string::npos) << message(head);
  ModelConfig bias = checkpoint.config;
  bias.attention_bias = true;
  EXPECT_NE(message(bias).find("biases"), std::string::npos) << message(bias);
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.bin")));
}

}  // namespace
}  // namespace llmpress

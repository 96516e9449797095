// llmpress lowrank end to end on stories260K: factorized, dense and GGUF outputs agree, load,
// keep a sane perplexity, and `info` shows the ranks.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdio>

#include "cli/cli_test_util.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/lowrank/low_rank_weight.h"
#include "llmpress/model/transformer.h"

namespace llmpress {
namespace {

test::CommandResult llmpress(const std::string& args) { return test::run_llmpress(args); }

double perplexity_of(const std::string& model, const std::string& text) {
  const test::CommandResult r = llmpress("perplexity -m " + model + " -f " + text + " -c 128 --chunks 8 --json --no-progress");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const size_t at = r.out.find("\"perplexity\":");
  return at == std::string::npos ? -1 : std::stod(r.out.substr(at + 13));
}

TEST(CliLowRank, SvdLlmFactorizedDenseAndGgufOutputsAgree) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  LLMPRESS_REQUIRE_SHARED("data/tinystories-calib.txt");
  const std::string model = test::shared_path("models/stories260K/stories260K.bin");
  const std::string eval = test::shared_path("data/tinystories-eval.txt");
  const std::string common = " --method svd-llm --ratio 0.6 --override 'layers\\.0\\.mlp\\.down_proj=0' --calib " +
                             test::shared_path("data/tinystories-calib.txt") + " --nsamples 8 --seqlen 64 --no-progress";
  test::TempDir dir;
  const test::CommandResult f = llmpress("lowrank -m " + model + " -o " + dir.file("f") + common + " --verbose");
  ASSERT_EQ(f.exit_code, 0) << f.err;
  EXPECT_NE(f.out.find("linear parameters "), std::string::npos) << f.out;
  EXPECT_NE(f.out.find("model.layers.1.mlp.up_proj"), std::string::npos) << f.out;
  const test::CommandResult d = llmpress("lowrank -m " + model + " -o " + dir.file("d") + common + " --format dense");
  ASSERT_EQ(d.exit_code, 0) << d.err;
  const test::CommandResult g = llmpress("lowrank -m " + model + " -o " + dir.file("g.gguf") + common + " --format gguf");
  ASSERT_EQ(g.exit_code, 0) << g.err;

  // config.json lists exactly the factorized layers with their ranks.
  const nlohmann::json config = nlohmann::json::parse(test::slurp(dir.file("f/config.json")));
  const nlohmann::json& ranks = config["llmpress"]["lowrank"]["ranks"];
  EXPECT_FALSE(ranks.contains("model.layers.0.mlp.down_proj"));
  const Transformer factorized = Transformer::load(open_checkpoint(dir.file("f")));
  int64_t counted = 0;
  for (size_t i = 0; i < factorized.layers.size(); ++i)
    for (const std::string& name : DecoderLayer::linear_names()) {
      const std::string full = "model.layers." + std::to_string(i) + "." + name;
      const auto* low = dynamic_cast<const LowRankWeight*>(factorized.layers[i].linear(name).weight.get());
      ASSERT_EQ(low != nullptr, ranks.contains(full)) << full;
      if (low) EXPECT_EQ(low->rank(), ranks[full].get<int64_t>()) << full;
      counted += low != nullptr;
    }
  EXPECT_GT(counted, 0);

  // The dense folder (a second, deterministic run) holds the products of the factors.
  const Checkpoint dense_checkpoint = open_checkpoint(dir.file("d"));
  const Transformer dense = Transformer::load(dense_checkpoint);
  for (size_t i = 0; i < dense.layers.size(); ++i)
    for (const std::string& name : DecoderLayer::linear_names())
      EXPECT_TRUE(at::allclose(dense.layers[i].linear(name).weight->dense(),
                               factorized.layers[i].linear(name).weight->dense(), 1e-5, 1e-6))
          << i << " " << name;
  const at::Tensor tokens = at::randint(1, dense.config.vocab_size, {1, 32}, at::kLong);
  const at::Tensor logits = factorized.forward(tokens);
  EXPECT_TRUE(at::allclose(dense.forward(tokens), logits, 1e-4, 1e-4));
  EXPECT_TRUE(at::allclose(Transformer::load(open_checkpoint(dir.file("g.gguf"))).forward(tokens), logits, 1e-4, 1e-4));

  const test::CommandResult info = llmpress("info -m " + dir.file("f"));
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("rank"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("model.layers.1.mlp.up_proj"), std::string::npos) << info.out;

  // stories260K (hidden 64) loses much at 0.6 whatever the method; SVD-LLM must lose less than plain SVD.
  const test::CommandResult s = llmpress("lowrank -m " + model + " -o " + dir.file("s") +
                                         " --method svd --ratio 0.6 --override 'layers\\.0\\.mlp\\.down_proj=0' --no-progress");
  ASSERT_EQ(s.exit_code, 0) << s.err;
  const double base = perplexity_of(model, eval), compressed = perplexity_of(dir.file("f"), eval),
               plain = perplexity_of(dir.file("s"), eval);
  EXPECT_GT(compressed, base * 0.98);
  EXPECT_TRUE(std::isfinite(compressed));
  EXPECT_LT(compressed, plain) << "dense " << base << ", svd-llm 0.6 " << compressed << ", svd 0.6 " << plain;
}

TEST(CliLowRank, AllocatedRanksMeetTheBudgetWithQuantizedFactors) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  LLMPRESS_REQUIRE_SHARED("data/tinystories-calib.txt");
  const std::string model = test::shared_path("models/stories260K/stories260K.bin");
  test::TempDir dir;
  const test::CommandResult r =
      llmpress("lowrank -m " + model + " -o " + dir.file("a") + " --method asvd --ratio 0.7 --allocate --bits 8 " +
               "--group 32 --format dense --calib " + test::shared_path("data/tinystories-calib.txt") +
               " --nsamples 4 --seqlen 64 --no-progress");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const size_t at = r.out.find("(ratio ");
  ASSERT_NE(at, std::string::npos) << r.out;
  const double achieved = std::stod(r.out.substr(at + 7));
  EXPECT_LE(achieved, 0.7);
  EXPECT_GT(achieved, 0.65);  // the greedy allocation spends nearly all of the budget
  // 8-bit factors: the model is reported well below its 16-bit factorized size.
  double before = 0, after = 0;
  ASSERT_EQ(std::sscanf(r.out.c_str() + r.out.find("model size: "), "model size: %lf MiB at 16 bits -> %lf", &before,
                        &after), 2) << r.out;
  EXPECT_LT(after, before * 0.7);
  EXPECT_NO_THROW(open_checkpoint(dir.file("a")));
}

TEST(CliLowRank, ClearErrors) {
  LLMPRESS_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const std::string model = test::shared_path("models/stories260K/stories260K.bin");
  test::TempDir dir;
  test::CommandResult r = llmpress("lowrank -m " + model + " -o " + dir.file("x") + " --method svd --ratio 0.5 --format factorized-gguf");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("llama.cpp cannot run"), std::string::npos) << r.err;
  r = llmpress("lowrank -m " + model + " -o " + dir.file("x") + " --method svd-llm --ratio 0.5");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--calib"), std::string::npos) << r.err;
  r = llmpress("lowrank -m " + model + " -o " + dir.file("x") + " --method svd");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--ratio"), std::string::npos) << r.err;
  r = llmpress("lowrank -m " + model + " -o " + dir.file("x") + " --method svd --ratio 0.5 --override '(=3'");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("regular expression"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("x")));
  // Plain SVD needs no calibration: it runs without --calib.
  r = llmpress("lowrank -m " + model + " -o " + dir.file("s") + " --method svd --rank 8 --no-progress");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

}  // namespace
}  // namespace llmpress

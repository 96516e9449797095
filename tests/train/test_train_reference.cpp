// The trainer against an independent PyTorch implementation (torch_train_reference.py beside this file,
// run with Debian's /usr/bin/python3): ten AdamW steps of gutenberg-dev-llama-5m (warm-up, cosine,
// clipping, weight decay on matrices, gradient accumulation) give the losses and gradient norms of
// torch.optim.AdamW on the same batches within 1e-4, and the first step's gradients agree to 1e-5; packed
// prompt/response records give the same losses as PyTorch's block-diagonal attention. As llm.c checks
// itself. Skips without /usr/bin/python3 + torch (scripts/setup.sh installs python3-torch).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "llmpress/data/text.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/io/safetensors.h"
#include "llmpress/tokenizer/tokenizer.h"
#include "llmpress/train/trainer.h"
#include "test_util.h"
#include "torch_reference.h"

namespace llmpress {
namespace {

using nlohmann::json;
constexpr const char* kModel = "models/gutenberg-dev-llama-5m";

#define REQUIRE_TORCH_REFERENCE()                                                                    \
  do {                                                                                               \
    const std::string why = test::torch_reference_unavailable();                                                 \
    if (!why.empty()) GTEST_SKIP() << "PyTorch reference unavailable (" << why << "); scripts/setup.sh installs python3-torch"; \
  } while (0)

json matrix(const at::Tensor& t) {
  json rows = json::array();
  for (int64_t i = 0; i < t.size(0); ++i) {
    const at::Tensor r = t[i].contiguous().to(at::kLong);
    rows.push_back(std::vector<int64_t>(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel()));
  }
  return rows;
}

// The reference's input: exactly the batches and learning rates our trainer uses.
json reference_input(const TrainingData& data, const TrainOptions& o, const Transformer& model) {
  json in = {{"model_dir", test::shared_path(kModel)}, {"threads", 1}, {"clip", o.clip}, {"bf16", o.bf16},
             {"optimizer", {{"betas", {o.beta1, o.beta2}}, {"eps", o.eps}, {"weight_decay", o.weight_decay}}}};
  json no_decay = json::array();
  for (const Parameter& p : model_parameters(model))
    if (!p.decay) no_decay.push_back(p.name);
  in["no_decay"] = no_decay;
  for (int64_t step = 0; step < o.steps; ++step) {
    json micro = json::array();
    for (int64_t m = 0; m < o.grad_accum; ++m) {
      const Batch b = data.batch(data.rows_for(step * o.grad_accum + m, o.batch_size, o.seed));
      json mb = {{"inputs", matrix(b.inputs)}, {"labels", matrix(b.labels)}};
      if (b.layout.defined()) mb["positions"] = matrix(b.layout.positions), mb["segments"] = matrix(b.layout.documents);
      micro.push_back(mb);
    }
    in["steps"].push_back({{"lr", learning_rate(o, step)}, {"micro_batches", micro}});
  }
  return in;
}

json run_reference(const test::TempDir& dir, const json& in, const std::string& grads = "") {
  std::ofstream(dir.file("in.json")) << in.dump();
  const std::string script = (std::filesystem::path(__FILE__).parent_path() / "torch_train_reference.py").string();
  const std::string command = test::torch_python() + " " + script + " " + dir.file("in.json") + " " + dir.file("out.json") +
                              (grads.empty() ? "" : " " + grads) + " 2>" + dir.file("err.txt");
  EXPECT_EQ(std::system(command.c_str()), 0) << read_text_file(dir.file("err.txt"));
  return json::parse(read_text_file(dir.file("out.json")));
}

TrainOptions reference_options() {
  TrainOptions o;
  o.steps = 10;
  o.batch_size = 2;
  o.grad_accum = 2;
  o.lr = 1e-3;
  o.warmup = 3;
  o.min_lr = 1e-4;
  o.weight_decay = 0.1;
  o.clip = 1.0;
  o.progress = false;
  return o;
}

// The first 20,000 tokens of the training text in windows of 64: the rows both reference runs read.
TrainingData reference_windows(const Checkpoint& ck) {
  std::vector<int32_t> tokens = load_tokenizer(ck)->encode(read_text_file(test::shared_path("data/gutenberg-dev-train.txt")));
  tokens.resize(20000);
  return TrainingData::from_tokens(tokens, 64);
}

TEST(TrainReference, TenAdamWStepsMatchPyTorch) {
  LLMPRESS_REQUIRE_SHARED(kModel);
  REQUIRE_TORCH_REFERENCE();
  const Checkpoint ck = open_checkpoint(test::shared_path(kModel));
  const TrainingData data = reference_windows(ck);
  const TrainOptions o = reference_options();
  test::TempDir dir;
  Transformer model = deep_copy(Transformer::load(ck));
  const json in = reference_input(data, o, model);

  // Step 0's gradients, taken the way the trainer takes them (token-weighted micro-batches).
  const auto params = select_trainable(model, "");
  const LossFunction loss = cross_entropy_loss(model, false);
  std::vector<Batch> first;
  int64_t scored = 0;
  for (int64_t m = 0; m < o.grad_accum; ++m) {
    first.push_back(data.batch(data.rows_for(m, o.batch_size, o.seed)));
    scored += first.back().scored();
  }
  for (const Batch& b : first) (loss(b, 0).loss * (double(b.scored()) / double(scored))).backward();
  const json out = run_reference(dir, in, dir.file("grads.safetensors"));
  const SafetensorsFile grads = read_safetensors(dir.file("grads.safetensors"));
  ASSERT_EQ(grads.tensors.size(), params.size());
  for (const RawTensor& g : grads.tensors) {
    const auto p = std::find_if(params.begin(), params.end(), [&](const Parameter& q) { return q.name == g.name; });
    ASSERT_NE(p, params.end()) << g.name;
    const at::Tensor ref = at::from_blob(const_cast<uint8_t*>(g.data), g.shape, at::kFloat).clone();
    const at::Tensor ours = p->tensor.grad();
    const double scale = ref.abs().max().item<double>();
    EXPECT_LT((ours - ref).abs().max().item<double>(), 1e-5 * scale + 1e-9) << g.name;
  }
  for (const Parameter& p : params) p.tensor.mutable_grad() = at::Tensor();

  const TrainResult result = train(model, data, loss, o);
  ASSERT_EQ(out["losses"].size(), size_t(o.steps));
  for (int64_t s = 0; s < o.steps; ++s) {
    EXPECT_NEAR(result.losses[size_t(s)], out["losses"][s].get<double>(), 1e-4) << "step " << s;
    EXPECT_NEAR(result.grad_norms[size_t(s)], out["grad_norms"][s].get<double>(), 1e-4 * (1 + result.grad_norms[size_t(s)]))
        << "step " << s;
  }
}

// Mixed precision: our autocast against torch.autocast(cpu, bfloat16) on the same steps, and both
// near the float32 run (the two bfloat16 forwards round in different places, so not closer than that).
TEST(TrainReference, Bf16AutocastStepsMatchPyTorch) {
  LLMPRESS_REQUIRE_SHARED(kModel);
  REQUIRE_TORCH_REFERENCE();
  const Checkpoint ck = open_checkpoint(test::shared_path(kModel));
  const TrainingData data = reference_windows(ck);
  TrainOptions o = reference_options();
  o.steps = 5;
  test::TempDir dir;
  std::vector<double> losses[2];
  for (bool bf16 : {false, true}) {
    o.bf16 = bf16;
    Transformer model = deep_copy(Transformer::load(ck));
    losses[bf16] = train(model, data, cross_entropy_loss(model, bf16), o).losses;  // bf16 also through checkpointing
    for (const Parameter& p : model_parameters(model)) EXPECT_EQ(p.tensor.scalar_type(), at::kFloat) << p.name;
  }
  const json out = run_reference(dir, reference_input(data, o, deep_copy(Transformer::load(ck))));
  for (int64_t s = 0; s < o.steps; ++s) {
    // Measured: both bfloat16 runs within ~2e-3 of each other and of float32 (bfloat16 keeps 8 bits of mantissa).
    EXPECT_NEAR(losses[1][size_t(s)], out["losses"][s].get<double>(), 5e-3) << "step " << s;
    EXPECT_NEAR(losses[1][size_t(s)], losses[0][size_t(s)], 5e-3) << "step " << s;
  }
  EXPECT_NE(losses[1][0], losses[0][0]) << "the bfloat16 run computed in float32";
}

TEST(TrainReference, PackedRecordsMatchPyTorch) {
  LLMPRESS_REQUIRE_SHARED(kModel);
  REQUIRE_TORCH_REFERENCE();
  const Checkpoint ck = open_checkpoint(test::shared_path(kModel));
  const auto tok = load_tokenizer(ck);
  test::TempDir dir;
  // Prompt/response records cut from the training text: several per row, of uneven lengths.
  const std::string text = read_text_file(test::shared_path("data/gutenberg-dev-train.txt")).substr(5000, 6000);
  {
    std::ofstream records(dir.file("sft.jsonl"));
    for (size_t at = 0, n = 0; at + 200 < text.size(); at += 60 + 37 * (n % 4), ++n)
      records << json{{"prompt", text.substr(at, 25 + 7 * (n % 3))}, {"response", text.substr(at + 40, 20 + 11 * (n % 5))}}.dump()
              << "\n";
  }
  const TrainingData data = TrainingData::load(dir.file("sft.jsonl"), *tok, 96);
  ASSERT_TRUE(data.packed());
  TrainOptions o = reference_options();
  o.steps = 4;
  Transformer model = deep_copy(Transformer::load(ck));
  const json out = run_reference(dir, reference_input(data, o, model));
  const TrainResult result = train(model, data, cross_entropy_loss(model, false), o);
  for (int64_t s = 0; s < o.steps; ++s)
    EXPECT_NEAR(result.losses[size_t(s)], out["losses"][s].get<double>(), 1e-4) << "step " << s;
}

}  // namespace
}  // namespace llmpress

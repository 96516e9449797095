// The trainer and its model plumbing on tiny random models: packed attention against separate
// documents, activation checkpointing against the plain backward pass, copies that share nothing, masks
// and factors in training, the schedule, bit-exact resume and a clear stop on a NaN loss.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "llmpress/core/error.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/lowrank/low_rank_weight.h"
#include "llmpress/model/sparse_weight.h"
#include "llmpress/train/data.h"
#include "llmpress/train/forward.h"
#include "llmpress/train/parameters.h"
#include "llmpress/tokenizer/tokenizer.h"
#include "llmpress/train/trainer.h"
#include "test_util.h"
#include "train/train_test_util.h"

namespace llmpress {
namespace {

ModelConfig tiny_config() { return test::tiny_config(37, 4, 2, 4); }

Transformer tiny_model(uint64_t seed = 1) { return random_model(tiny_config(), 0.2, seed); }

std::vector<int32_t> random_tokens(int64_t n, uint64_t seed) { return test::random_tokens(n, seed, 37); }

TrainOptions quick_options() {
  TrainOptions o;
  o.steps = 6;
  o.batch_size = 2;
  o.grad_accum = 2;
  o.lr = 1e-2;
  o.warmup = 2;
  o.weight_decay = 0.1;
  o.progress = false;
  return o;
}

TEST(TrainModel, PackedDocumentsGiveTheLogitsOfSeparateRuns) {
  const Transformer model = tiny_model();
  const at::Tensor a = at::tensor({3, 5, 7, 9, 11}, at::kLong), b = at::tensor({2, 4, 6}, at::kLong);
  PackedLayout layout{at::cat({at::arange(5), at::arange(3)}).unsqueeze(0),
                      at::cat({at::zeros({5}, at::kLong), at::ones({3}, at::kLong)}).unsqueeze(0)};
  const at::Tensor packed = model.forward(at::cat({a, b}).unsqueeze(0), nullptr, &layout);
  const at::Tensor separate = at::cat({model.forward(a.unsqueeze(0)), model.forward(b.unsqueeze(0))}, 1);
  EXPECT_TRUE(at::allclose(packed, separate, 1e-5, 1e-6));
  // Without the layout the second document sees the first.
  EXPECT_FALSE(at::allclose(model.forward(at::cat({a, b}).unsqueeze(0)), separate, 1e-5, 1e-6));
}

TEST(TrainModel, CheckpointedLayersGiveTheSameGradients) {
  const Transformer model = tiny_model();
  const std::vector<Parameter> params = select_trainable(model, "");
  const at::Tensor tokens = at::randint(37, {2, 9}, at::kLong), labels = at::randint(37, {2, 9}, at::kLong);
  std::vector<at::Tensor> grads[2];
  for (bool checkpoint : {false, true}) {
    for (const Parameter& p : params) p.tensor.mutable_grad() = at::Tensor();
    ForwardOptions f;
    f.checkpoint_layers = checkpoint;
    const at::Tensor logits = training_forward(model, tokens, nullptr, f).logits;
    at::cross_entropy_loss(logits.reshape({-1, 37}), labels.reshape({-1})).backward();
    for (const Parameter& p : params) grads[checkpoint].push_back(p.tensor.grad().clone());
  }
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_TRUE(at::allclose(grads[0][i], grads[1][i], 1e-5, 1e-7)) << params[i].name;
  // A frozen embedding still lets the checkpointed layers learn.
  select_trainable(model, "layers");
  ForwardOptions f;
  f.checkpoint_layers = true;
  for (const Parameter& p : params) p.tensor.mutable_grad() = at::Tensor();
  at::cross_entropy_loss(training_forward(model, tokens, nullptr, f).logits.reshape({-1, 37}), labels.reshape({-1})).backward();
  EXPECT_TRUE(model.layers[0].linear("self_attn.q_proj").weight->dense().grad().defined());
  EXPECT_FALSE(model.embed_tokens.grad().defined());
}

TEST(TrainModel, DeepCopySharesNothingAndSelectionFreezesTheRest) {
  Transformer teacher = tiny_model();
  const Transformer student = deep_copy(teacher);
  const auto names = model_parameters(student);
  ASSERT_EQ(names.size(), model_parameters(teacher).size());
  for (const Parameter& p : names) p.tensor.detach().add_(1.0);
  for (const Parameter& p : model_parameters(teacher)) EXPECT_LT(p.tensor.abs().max().item<double>(), 5) << p.name;
  const auto chosen = select_trainable(student, "mlp\\.");
  EXPECT_EQ(chosen.size(), 6u);  // gate, up, down of two layers
  EXPECT_FALSE(student.embed_tokens.requires_grad());
  EXPECT_THROW(select_trainable(student, "nothing-matches"), Error);
  EXPECT_THROW(select_trainable(student, "("), Error);
  const Transformer shallow = copy_layers(teacher, {1});
  EXPECT_EQ(shallow.config.num_layers, 1);
  EXPECT_TRUE(at::equal(shallow.layers[0].input_norm, teacher.layers[1].input_norm));
  EXPECT_THROW(copy_layers(teacher, {2}), Error);
}

TEST(TrainModel, SparseWeightsKeepEveryZeroAndFactorsTrain) {
  Transformer model = tiny_model();
  Linear& q = model.layers[0].linear("self_attn.q_proj");
  const at::Tensor removed = at::rand(q.weight->dense().sizes()) < 0.5;
  q.weight = std::make_shared<SparseWeight>(std::make_shared<DenseWeight>(q.weight->dense().masked_fill(removed, 0)), removed);
  Linear& up = model.layers[1].linear("mlp.up_proj");
  const at::Tensor w = up.weight->dense();
  up.weight = std::make_shared<LowRankWeight>(w.narrow(1, 0, 4).clone(), at::eye(4, w.size(1)));
  const at::Tensor q_before = q.weight->dense().clone(), up_before = up.weight->dense().clone();
  const TrainingData data = TrainingData::from_tokens(random_tokens(400, 3), 8);
  const auto names = model_parameters(model);
  EXPECT_TRUE(std::any_of(names.begin(), names.end(), [](const Parameter& p) { return p.name == "model.layers.1.mlp.up_proj.weight_v"; }));
  train(model, data, cross_entropy_loss(model, false), quick_options());
  const at::Tensor q_after = q.weight->dense();
  EXPECT_TRUE((q_after.masked_select(removed) == 0).all().item<bool>());
  EXPECT_FALSE(at::equal(q_after.masked_select(removed.logical_not()), q_before.masked_select(removed.logical_not())));
  EXPECT_FALSE(at::equal(up.weight->dense(), up_before));
  EXPECT_EQ(q.weight->kind(), "sparse");
}

TEST(TrainLoop, ScheduleWarmsUpThenDecays) {
  TrainOptions o;
  o.steps = 10;
  o.lr = 1.0;
  o.min_lr = 0.1;
  o.warmup = 2;
  EXPECT_DOUBLE_EQ(learning_rate(o, 0), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate(o, 1), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(o, 2), 1.0);  // cosine starts at the peak
  EXPECT_NEAR(learning_rate(o, 6), 0.55, 1e-12);  // half way: the mean of peak and floor
  o.schedule = "linear";
  EXPECT_NEAR(learning_rate(o, 6), 0.55, 1e-12);
  o.schedule = "constant";
  EXPECT_DOUBLE_EQ(learning_rate(o, 9), 1.0);
  o.schedule = "step";
  EXPECT_THROW(check_train_options(o), Error);
}

TEST(TrainLoop, LossFallsAndResumeIsBitExact) {
  const TrainingData data = TrainingData::from_tokens(random_tokens(600, 4), 8);
  test::TempDir dir;
  Transformer whole = tiny_model();
  const TrainResult straight = train(whole, data, cross_entropy_loss(whole, false), quick_options());
  ASSERT_EQ(straight.losses.size(), 6u);

  Transformer model = tiny_model();
  TrainOptions o = quick_options();
  o.state_path = dir.file("state");
  o.save_every = 3;
  const LossFunction plain = cross_entropy_loss(model, false);
  const LossFunction crashing = [&](const Batch& b, int64_t step) -> StepLoss {
    if (step == 4) throw std::runtime_error("simulated crash");
    return plain(b, step);
  };
  EXPECT_THROW(train(model, data, crashing, o), std::runtime_error);
  Transformer resumed_model = tiny_model(99);  // other weights: all of them must come from the state
  o.resume = true;
  const TrainResult resumed = train(resumed_model, data, cross_entropy_loss(resumed_model, false), o);
  EXPECT_EQ(resumed.start_step, 3);
  EXPECT_EQ(resumed.losses, straight.losses);  // bit for bit, the first three from the state file
  const auto a = model_parameters(whole), b = model_parameters(resumed_model);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i].tensor, b[i].tensor)) << a[i].name;
  // Another job's options are refused.
  o.lr = 2e-2;
  EXPECT_THROW(train(resumed_model, data, cross_entropy_loss(resumed_model, false), o), Error);
}

TEST(TrainLoop, NanLossStopsAndKeepsTheLastCheckpoint) {
  const TrainingData data = TrainingData::from_tokens(random_tokens(600, 5), 8);
  test::TempDir dir;
  Transformer model = tiny_model();
  TrainOptions o = quick_options();
  o.state_path = dir.file("state");
  o.save_every = 2;
  const LossFunction plain = cross_entropy_loss(model, false);
  const LossFunction exploding = [&](const Batch& b, int64_t step) -> StepLoss {
    StepLoss l = plain(b, step);
    if (step == 4) l.loss = l.loss * std::numeric_limits<double>::quiet_NaN();
    return l;
  };
  try {
    train(model, data, exploding, o);
    FAIL() << "a NaN loss must stop training";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("step 5"), std::string::npos) << m;
    EXPECT_NE(m.find("nan"), std::string::npos) << m;
    EXPECT_NE(m.find("step 4 is kept"), std::string::npos) << m;
  }
  ASSERT_TRUE(std::filesystem::exists(o.state_path));
  o.resume = true;
  Transformer again = tiny_model();
  EXPECT_EQ(train(again, data, cross_entropy_loss(again, false), o).start_step, 4);
}

TEST(TrainData, RecordsArePackedAndOnlyResponsesScored) {
  const Transformer model = tiny_model();
  test::TempDir dir;
  std::ofstream(dir.file("sft.jsonl")) << R"({"prompt": "ab", "response": "cd"})" << "\n"
                                       << R"({"text": "efg"})" << "\n\n"
                                       << R"({"prompt": "h", "completion": "ijklmnopqrstuvwxyz"})" << "\n";
  LLMPRESS_REQUIRE_SHARED("models/stories260K");
  const Checkpoint ck = open_checkpoint(test::shared_path("models/stories260K/stories260K.bin"));
  const auto tok = load_tokenizer(ck);
  const TrainingData data = TrainingData::load(dir.file("sft.jsonl"), *tok, 12);
  ASSERT_TRUE(data.packed());
  const Batch all = data.batch({0});
  const at::Tensor docs = all.layout.documents[0], pos = all.layout.positions[0];
  EXPECT_EQ(pos[0].item<int64_t>(), 0);
  // The first record: BOS + prompt tokens unscored, response + EOS scored.
  const auto prompt = tok->encode("ab"), response = tok->encode("cd");
  const int64_t first = int64_t(1 + prompt.size() + response.size());  // predictions of record 1
  for (int64_t t = 0; t < first; ++t) {
    EXPECT_EQ(docs[t].item<int64_t>(), 0);
    EXPECT_EQ(all.mask[0][t].item<bool>(), t >= int64_t(prompt.size())) << t;
  }
  EXPECT_EQ(all.labels[0][first - 1].item<int64_t>(), tok->eos_id());
  EXPECT_EQ(pos[first].item<int64_t>(), 0);  // the next record starts again at 0
  std::ofstream(dir.file("bad.jsonl")) << R"({"prompt": "x"})" << "\n";
  try {
    TrainingData::load(dir.file("bad.jsonl"), *tok, 12);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:1"), std::string::npos) << e.what();
  }
  // Record weights: a weight-0 record adds nothing, yet the mean still counts its tokens; a common
  // weight w scales the plain token mean by w.
  std::ofstream(dir.file("plain.jsonl")) << R"({"prompt": "ab", "response": "cd"})" << "\n"
                                         << R"({"prompt": "h", "response": "ijk"})" << "\n";
  std::ofstream(dir.file("zero.jsonl")) << R"({"prompt": "ab", "response": "cd", "weight": 0})" << "\n"
                                        << R"({"prompt": "h", "response": "ijk"})" << "\n";
  std::ofstream(dir.file("three.jsonl")) << R"({"prompt": "ab", "response": "cd", "weight": 3})" << "\n"
                                         << R"({"prompt": "h", "response": "ijk", "weight": 3})" << "\n";
  const Batch plain = TrainingData::load(dir.file("plain.jsonl"), *tok, 24).batch({0});
  const Batch zero = TrainingData::load(dir.file("zero.jsonl"), *tok, 24).batch({0});
  const Batch three = TrainingData::load(dir.file("three.jsonl"), *tok, 24).batch({0});
  EXPECT_FALSE(plain.weights.defined());
  ASSERT_TRUE(zero.weights.defined());
  at::Generator gen = at::detail::createCPUGenerator(5);
  const at::Tensor logits = at::randn({1, 24, tok->vocab_size()}, gen);
  const at::Tensor terms = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), plain.labels.reshape({-1}), {},
                                                  at::Reduction::None);
  const at::Tensor second = (plain.layout.documents.reshape({-1}) == 1).to(at::kFloat);
  const double expected_zero = ((terms * second).sum() / plain.mask.sum()).item<double>();
  EXPECT_NEAR(scored_cross_entropy(logits, zero).item<double>(), expected_zero, 1e-6);
  EXPECT_NEAR(scored_cross_entropy(logits, three).item<double>(), 3 * scored_cross_entropy(logits, plain).item<double>(), 1e-5);
  std::ofstream(dir.file("badweight.jsonl")) << R"({"prompt": "ab", "response": "cd"})" << "\n"
                                             << R"({"prompt": "ab", "response": "cd", "weight": -1})" << "\n";
  try {
    TrainingData::load(dir.file("badweight.jsonl"), *tok, 12);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("badweight.jsonl:2: \"weight\""), std::string::npos) << e.what();
  }
  // Every row once per epoch, in a seeded order.
  const TrainingData text = TrainingData::from_tokens(random_tokens(100, 6), 9);
  std::vector<int64_t> seen;
  for (int64_t i = 0; i < 11; ++i)
    for (int64_t r : text.rows_for(i, 1, 7)) seen.push_back(r);
  std::vector<int64_t> sorted = seen;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 11; ++i) EXPECT_EQ(sorted[size_t(i)], i);
  EXPECT_EQ(text.rows_for(3, 2, 7), text.rows_for(3, 2, 7));
  EXPECT_NE(text.rows_for(0, 11, 7), text.rows_for(0, 11, 8));
}

}  // namespace
}  // namespace llmpress

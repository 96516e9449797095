// Distillation as a training loss on tiny random models: a student equal to its teacher has zero loss
// and gradient, the top-k cache with k = vocabulary equals the online teacher, continuations are seeded
// and scored only where generated, and vocabularies are checked.
#include <gtest/gtest.h>

#include <cstring>

#include <fstream>
#include <iterator>

#include "llmpress/core/error.h"
#include "llmpress/distill/distiller.h"
#include "llmpress/io/checkpoint.h"
#include "llmpress/tokenizer/tokenizer.h"
#include "llmpress/train/parameters.h"
#include "test_util.h"
#include "train/train_test_util.h"

namespace llmpress {
namespace {

ModelConfig tiny_config() { return test::tiny_config(29, 2, 1, 8); }

TrainingData tiny_data() {
  at::Generator gen = at::detail::createCPUGenerator(11);
  const at::Tensor t = at::randint(29, {300}, gen, at::kLong);
  return TrainingData::from_tokens(std::vector<int32_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + 300), 10);
}

double loss_of(const LossFunction& loss, const Batch& batch) { return loss(batch, 0).loss.item<double>(); }

TEST(Distill, AStudentEqualToItsTeacherHasZeroLossAndGradient) {
  const Transformer teacher = random_model(tiny_config(), 0.3, 1);
  const Transformer student = deep_copy(teacher);
  const auto params = select_trainable(student, "");
  const Batch batch = tiny_data().batch({0, 3});
  for (const char* name : {"fkl", "rkl", "jsd", "tvd", "skl", "srkl"}) {
    DistillOptions o;
    o.kd.divergence = parse_kd_divergence(name);
    for (const Parameter& p : params) p.tensor.mutable_grad() = at::Tensor();
    const at::Tensor loss = distillation_loss(student, &teacher, nullptr, 29, o, 0)(batch, 0).loss;
    EXPECT_NEAR(loss.item<double>(), 0, 1e-6) << name;
    loss.backward();
    for (const Parameter& p : params)
      if (p.tensor.grad().defined()) EXPECT_LT(p.tensor.grad().abs().max().item<double>(), 1e-5) << name << " " << p.name;
  }
  DistillOptions hidden;
  hidden.hidden_weight = 1.0;
  hidden.hidden_loss = HiddenLoss::Cosine;
  EXPECT_NEAR(loss_of(distillation_loss(student, &teacher, nullptr, 29, hidden, 0), batch), 0, 1e-6);
  // A different student has a positive loss.
  const Transformer other = random_model(tiny_config(), 0.3, 2);
  EXPECT_GT(loss_of(distillation_loss(other, &teacher, nullptr, 29, DistillOptions{}, 0), batch), 1e-3);
}

TEST(Distill, TopKCacheOfTheWholeVocabularyEqualsTheOnlineTeacher) {
  const Transformer teacher = random_model(tiny_config(), 0.3, 1);
  const Transformer student = random_model(tiny_config(), 0.3, 2);
  const TrainingData data = tiny_data();
  test::TempDir dir;
  for (const char* name : {"fkl", "rkl", "jsd", "tvd"}) {
    DistillOptions o;
    o.kd.divergence = parse_kd_divergence(name);
    o.kd.temperature = 2.0;
    o.kd.ce_weight = 0.25;
    const std::string path = dir.file(std::string(name) + ".cache");
    TeacherCache::build(path, teacher, data, {4, 1, 4, 7}, 29, 2.0, 3, false);
    const TeacherCache cache = TeacherCache::open(path, data);
    const Batch batch = data.batch({7, 1});
    const double online = loss_of(distillation_loss(student, &teacher, nullptr, 29, o, 0), batch);
    const double cached = loss_of(distillation_loss(student, nullptr, &cache, 29, o, 0), batch);
    EXPECT_NEAR(cached, online, 1e-5 * std::abs(online)) << name;
    // A smaller k is a coarser, smaller divergence; a row outside the cache is a clear error.
    TeacherCache::build(dir.file("k4"), teacher, data, {1, 7}, 4, 2.0, 3, false);
    const TeacherCache small = TeacherCache::open(dir.file("k4"), data);
    EXPECT_LT(loss_of(distillation_loss(student, nullptr, &small, 29, o, 0), batch), online + 1e-6) << name;
    EXPECT_THROW(distillation_loss(student, nullptr, &small, 29, o, 0)(data.batch({2}), 0), Error);
  }
  // Another temperature or other data is refused.
  const TeacherCache cache = TeacherCache::open(dir.file("k4"), data);
  EXPECT_THROW(distillation_loss(student, nullptr, &cache, 29, DistillOptions{}, 0), Error);
  EXPECT_THROW(TeacherCache::open(dir.file("k4"), TrainingData::from_tokens(std::vector<int32_t>(100, 3), 10)), Error);
}

TEST(Distill, CacheFilesAreCheckedBeforeUse) {
  const Transformer teacher = random_model(tiny_config(), 0.3, 1);
  const TrainingData data = tiny_data();
  test::TempDir dir;
  TeacherCache::build(dir.file("c"), teacher, data, {0, 1, 2}, 5, 1.0, 2, false);
  const std::string bytes = [&] {
    std::ifstream in(dir.file("c"), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  for (size_t keep : {size_t(4), size_t(20), bytes.size() - 1}) {
    std::ofstream(dir.file("t"), std::ios::binary) << bytes.substr(0, keep);
    EXPECT_THROW(TeacherCache::open(dir.file("t"), data), Error) << keep;
  }
  std::ofstream(dir.file("x"), std::ios::binary) << "not a cache at all";
  EXPECT_THROW(TeacherCache::open(dir.file("x"), data), Error);

  // A header whose k makes the row size wrap around 64 bits (2^61 ids of 8 bytes) must not pass the
  // size check and have lookup() read past the file.
  uint64_t length = 0;
  std::memcpy(&length, bytes.data() + 8, 8);
  nlohmann::json header = nlohmann::json::parse(bytes.substr(16, length));
  header["vocab"] = int64_t(1) << 62;
  header["k"] = int64_t(1) << 61;
  const std::string text = header.dump();
  const uint64_t new_length = text.size();
  std::string wrapped = bytes.substr(0, 8) + std::string(reinterpret_cast<const char*>(&new_length), 8) + text +
                        bytes.substr(16 + length);
  std::ofstream(dir.file("w"), std::ios::binary) << wrapped;
  EXPECT_THROW(TeacherCache::open(dir.file("w"), data), Error);

  // Found by fuzz_teacher_cache: a cache of no entries (fuzz/regressions/teacher_cache/no-entries) opens
  // and refuses every row clearly.
  nlohmann::json empty = nlohmann::json::parse(bytes.substr(16, length));
  empty["entries"] = 0;
  const std::string empty_text = empty.dump();
  const uint64_t empty_length = empty_text.size();
  std::ofstream(dir.file("e"), std::ios::binary)
      << bytes.substr(0, 8) + std::string(reinterpret_cast<const char*>(&empty_length), 8) + empty_text;
  const TeacherCache none = TeacherCache::open(dir.file("e"), data);
  EXPECT_THROW(none.lookup({0}), Error);
}

TEST(Distill, ContinuationsAreSeededAndScoredWhereGenerated) {
  const Transformer model = random_model(tiny_config(), 0.3, 1);
  const Batch batch = tiny_data().batch({0, 1});
  const Batch a = continue_rows(model, batch, 1.0, 5), b = continue_rows(model, batch, 1.0, 5);
  EXPECT_TRUE(at::equal(a.inputs, b.inputs));
  EXPECT_FALSE(at::equal(a.inputs, continue_rows(model, batch, 1.0, 6).inputs));
  EXPECT_TRUE(at::equal(a.inputs.narrow(1, 0, 5), batch.inputs.narrow(1, 0, 5)));  // the prompt half stays
  EXPECT_TRUE(at::equal(a.labels.narrow(1, 4, 5), a.inputs.narrow(1, 5, 5)));
  EXPECT_EQ(a.mask.sum().item<int64_t>(), 2 * 6);  // positions 4..9 predict generated tokens
  const Batch greedy = continue_rows(model, batch, 0.0, 1);
  EXPECT_TRUE(at::equal(greedy.inputs, continue_rows(model, batch, 0.0, 2).inputs));
}

// Packed prompt/response records: each response becomes the model's own continuation of its prompt, of
// the same length; prompts, layout and scored positions stay; greedy continuations are the argmax of a
// plain (cache-free) forward over prompt + continuation so far.
TEST(Distill, RecordContinuationsReplaceOnlyTheResponses) {
  const Transformer model = random_model(tiny_config(), 0.3, 1);
  Batch batch;
  // Row 0: record A at 0..5 (prompt predictions at 0..1, response at 2..5), record B at 6..9 (response 8..9).
  const std::vector<int64_t> tokens = {3, 7, 9, 11, 2, 5, 4, 8, 6, 1, 12};
  batch.inputs = at::tensor(std::vector<int64_t>(tokens.begin(), tokens.end() - 1)).unsqueeze(0);
  batch.labels = at::tensor(std::vector<int64_t>(tokens.begin() + 1, tokens.end())).unsqueeze(0);
  batch.layout.documents = at::tensor(std::vector<int64_t>{0, 0, 0, 0, 0, 0, 1, 1, 1, 1}).unsqueeze(0);
  batch.layout.positions = at::tensor(std::vector<int64_t>{0, 1, 2, 3, 4, 5, 0, 1, 2, 3}).unsqueeze(0);
  batch.mask = at::tensor(std::vector<int64_t>{0, 0, 1, 1, 1, 1, 0, 0, 1, 1}).to(at::kBool).unsqueeze(0);
  batch.labels.masked_fill_(batch.mask.logical_not(), -100);
  batch.labels[0][5] = 4;  // record A's last label is its own final token (not record B's first)
  const Batch a = continue_records(model, batch, 1.0, 3);
  EXPECT_TRUE(at::equal(a.inputs, continue_records(model, batch, 1.0, 3).inputs));
  EXPECT_TRUE(at::equal(a.mask, batch.mask));
  EXPECT_TRUE(at::equal(a.layout.documents, batch.layout.documents));
  for (int64_t p : {0, 1, 2, 6, 7, 8}) EXPECT_EQ(a.inputs[0][p].item<int64_t>(), tokens[size_t(p)]) << p;  // prompts
  for (int64_t p : {2, 3, 4, 8}) EXPECT_EQ(a.labels[0][p].item<int64_t>(), a.inputs[0][p + 1].item<int64_t>()) << p;
  for (int64_t p : {0, 1, 6, 7}) EXPECT_EQ(a.labels[0][p].item<int64_t>(), -100) << p;
  const Batch greedy = continue_records(model, batch, 0.0, 0);
  for (const auto& [start, first, end] : {std::tuple<int64_t, int64_t, int64_t>{0, 2, 6}, {6, 8, 10}})
    for (int64_t q = first; q < end; ++q) {
      const at::Tensor logits = model.forward(greedy.inputs.narrow(1, start, q - start + 1));
      EXPECT_EQ(greedy.labels[0][q].item<int64_t>(), logits[0][q - start].argmax().item<int64_t>()) << q;
    }
}

// A teacher held in bfloat16: half the bytes of its matrices and embeddings, float32 out, and KD losses
// within bfloat16 rounding of the float32 teacher's.
TEST(Distill, ATeacherHeldInBf16GivesNearlyTheSameLoss) {
  const Transformer teacher = random_model(tiny_config(), 0.3, 1);
  Transformer half = deep_copy(teacher);
  int64_t matrices = teacher.embed_tokens.numel() + teacher.lm_head.weight->dense().numel();
  for (const DecoderLayer& layer : teacher.layers)
    for (const std::string& name : DecoderLayer::linear_names()) matrices += layer.linear(name).weight->dense().numel();
  EXPECT_EQ(hold_weights_in(half, at::kBFloat16), 2 * matrices);
  EXPECT_EQ(half.layers[0].linear("mlp.up_proj").weight->dense().scalar_type(), at::kBFloat16);
  EXPECT_EQ(half.norm.scalar_type(), at::kFloat);
  const Batch batch = tiny_data().batch({0, 3});
  const at::Tensor full_logits = teacher.forward(batch.inputs), half_logits = half.forward(batch.inputs);
  EXPECT_EQ(half_logits.scalar_type(), at::kFloat);
  EXPECT_LT((half_logits - full_logits).abs().max().item<double>(), 0.05 * full_logits.abs().max().item<double>());
  const Transformer student = random_model(tiny_config(), 0.3, 2);
  const double exact = loss_of(distillation_loss(student, &teacher, nullptr, 29, DistillOptions{}, 0), batch);
  const double approx = loss_of(distillation_loss(student, &half, nullptr, 29, DistillOptions{}, 0), batch);
  EXPECT_NEAR(approx, exact, 0.01 * exact);
  EXPECT_NE(approx, exact);
}

// A student narrower than its teacher: the hidden-state loss goes through a learned projection that
// trains with the student (equal widths need none).
TEST(Distill, HiddenStatesOfANarrowerStudentGoThroughATrainedProjection) {
  const Transformer teacher = random_model(tiny_config(), 0.3, 1);
  ModelConfig narrow = tiny_config();
  narrow.hidden_size = 8;
  Transformer student = random_model(narrow, 0.3, 2);
  DistillOptions o;
  o.hidden_weight = 1.0;
  EXPECT_TRUE(hidden_projection(deep_copy(teacher), teacher, o, 0).empty());
  EXPECT_THROW(distillation_loss(student, &teacher, nullptr, 29, o, 0), Error);  // widths differ, no projection
  const std::vector<Parameter> projection = hidden_projection(student, teacher, o, 0);
  ASSERT_EQ(projection.size(), 1u);
  EXPECT_EQ(projection[0].tensor.sizes().vec(), (std::vector<int64_t>{16, 8}));
  EXPECT_TRUE(at::equal(projection[0].tensor, hidden_projection(student, teacher, o, 0)[0].tensor));  // seeded
  const at::Tensor before = projection[0].tensor.detach().clone();
  const LossFunction loss = distillation_loss(student, &teacher, nullptr, 29, o, 0, projection);
  DistillOptions logits_only = o;
  logits_only.hidden_weight = 0;
  const Batch batch = tiny_data().batch({0, 3});
  EXPECT_GT(loss_of(loss, batch), loss_of(distillation_loss(student, &teacher, nullptr, 29, logits_only, 0), batch));
  TrainOptions t;
  t.steps = 3;
  t.batch_size = 2;
  t.lr = 1e-2;
  t.progress = false;
  const TrainResult result = train(student, tiny_data(), loss, t, projection);
  EXPECT_FALSE(at::equal(before, projection[0].tensor));
  EXPECT_FALSE(projection[0].tensor.requires_grad());
  EXPECT_LT(result.losses.back(), result.losses.front());
}

TEST(Distill, OptionsAndVocabulariesAreChecked) {
  DistillOptions o;
  o.on_policy = 1.5;
  EXPECT_THROW(check_distill_options(o), Error);
  o.on_policy = 0.5;
  EXPECT_NO_THROW(check_distill_options(o));
  o.sequence_kd = true;
  EXPECT_THROW(check_distill_options(o), Error);
  LLMPRESS_REQUIRE_SHARED("models/gutenberg-dev-llama-5m");
  const auto gutenberg = load_tokenizer(open_checkpoint(test::shared_path("models/gutenberg-dev-llama-5m")));
  EXPECT_NO_THROW(check_vocabularies(*gutenberg, 512, *gutenberg, 520));  // padding rows are allowed
  EXPECT_THROW(check_vocabularies(*gutenberg, 512, *gutenberg, 500), Error);
  Vocab other = gutenberg->to_vocab();
  other.tokens[300] = "<not the same>";
  const auto changed = tokenizer_from_vocab(other, "a changed vocabulary");
  try {
    check_vocabularies(*gutenberg, 512, *changed, 512);
    FAIL() << "different vocabularies must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vocabularies differ at token 300"), std::string::npos) << e.what();
  }
  other.tokens.pop_back();
  EXPECT_THROW(check_vocabularies(*gutenberg, 512, *tokenizer_from_vocab(other, "a smaller vocabulary"), 512), Error);
}

}  // namespace
}  // namespace llmpress

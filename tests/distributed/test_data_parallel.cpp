// Data parallelism in one process: ranks as threads, each joining a real Gloo group over loopback.
// The reference is one process with the same global batch: two ranks must take its steps (the
// gradients are the same sums in another order, so within float rounding), and stay bit-identical
// to each other.
#include <gtest/gtest.h>


#include <functional>
#include <thread>

#include "llmpress/core/error.h"
#include "llmpress/distributed/communicator.h"
#include "llmpress/train/data.h"
#include "llmpress/train/parameters.h"
#include "llmpress/train/trainer.h"
#include "test_util.h"
#include "train/train_test_util.h"

namespace llmpress {
namespace {

// Runs `body` as each rank of a `world`-rank group (one thread each) and rethrows the first failure.
void on_ranks(int world, const std::function<void(const Communicator&)>& body) {
  const int port = free_loopback_port();
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        DistributedOptions o;
        o.world_size = world;
        o.rank = r;
        o.master_port = port;
        o.timeout_minutes = 2;
        const std::unique_ptr<Communicator> group = Communicator::connect(o);
        body(*group);
      } catch (...) {
        errors[size_t(r)] = std::current_exception();
      }
    });
  for (std::thread& t : threads) t.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

TEST(DataParallel, SharesCoverEveryItemOnceInRankOrder) {
  for (int64_t count : {0, 1, 5, 8, 13})
    for (int world : {1, 2, 3, 8}) {
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        const auto [begin, end] = share_of(count, r, world);
        EXPECT_EQ(begin, next);
        EXPECT_LE(end - begin, count / world + 1);
        EXPECT_GE(end - begin, count / world);
        next = end;
      }
      EXPECT_EQ(next, count);
    }
}

TEST(DataParallel, CollectivesGiveEveryRankTheSameResult) {
  on_ranks(3, [](const Communicator& group) {
    const double r = group.rank();
    at::Tensor sum = at::full({2, 3}, r + 1, at::kDouble), low = at::full({4}, r, at::kLong), high = low.clone();
    group.all_reduce(sum);
    group.all_reduce(low, Communicator::Reduce::Min);
    group.all_reduce(high, Communicator::Reduce::Max);
    EXPECT_TRUE(at::equal(sum, at::full({2, 3}, 6.0, at::kDouble)));
    EXPECT_EQ(low.min().item<int64_t>(), 0);
    EXPECT_EQ(high.max().item<int64_t>(), 2);
    // Several tensors of other shapes and dtypes in one exchange; a non-contiguous one too.
    at::Tensor a = at::full({3}, r, at::kFloat), b = at::full({2, 2}, 2 * r, at::kFloat).t();
    group.all_reduce_sum({a, b});
    EXPECT_TRUE(at::equal(a, at::full({3}, 3.0f)));
    EXPECT_TRUE(at::equal(b, at::full({2, 2}, 6.0f)));
    at::Tensor from_root = at::full({5}, r + 10, at::kFloat);
    group.broadcast(from_root, 1);
    EXPECT_TRUE(at::equal(from_root, at::full({5}, 11.0f)));
    group.check_same(42, "the answer");
    EXPECT_THROW(group.check_same(group.rank() == 2 ? 1 : 0, "a value"), Error);
  });
}

ModelConfig tiny_config() { return test::tiny_config(37, 4, 2, 4); }

std::vector<int32_t> random_tokens(int64_t n, uint64_t seed) { return test::random_tokens(n, seed, 37); }

TrainOptions options() {
  TrainOptions o;
  o.steps = 5;
  o.batch_size = 3;  // not a multiple of the ranks: shares of 2 and 1 rows
  o.grad_accum = 2;
  o.lr = 1e-3;
  o.warmup = 1;
  o.weight_decay = 0.1;
  o.clip = 0.5;  // the clipping coefficient needs the global norm
  o.progress = false;
  return o;
}

double max_difference(Transformer& a, Transformer& b) {
  const auto pa = model_parameters(a), pb = model_parameters(b);
  double worst = 0;
  for (size_t i = 0; i < pa.size(); ++i) worst = std::max(worst, (pa[i].tensor - pb[i].tensor).abs().max().item<double>());
  return worst;
}

TEST(DataParallel, TwoRanksTakeTheStepsOfOneProcess) {
  const TrainingData data = TrainingData::from_tokens(random_tokens(900, 4), 8);
  Transformer whole = random_model(tiny_config(), 0.2, 1);
  const TrainResult one = train(whole, data, cross_entropy_loss(whole, false), options());

  // Rank 1 starts from other weights: the group starts from rank 0's.
  Transformer models[2] = {random_model(tiny_config(), 0.2, 1), random_model(tiny_config(), 0.2, 7)};
  TrainResult results[2];
  on_ranks(2, [&](const Communicator& group) {
    TrainOptions o = options();
    o.group = &group;
    Transformer& model = models[group.rank()];
    results[group.rank()] = train(model, data, cross_entropy_loss(model, false), o);
  });
  ASSERT_EQ(results[0].losses.size(), one.losses.size());
  for (size_t s = 0; s < one.losses.size(); ++s) {
    EXPECT_NEAR(results[0].losses[s], one.losses[s], 1e-5 * one.losses[s]) << "step " << s;
    EXPECT_NEAR(results[0].grad_norms[s], one.grad_norms[s], 1e-4 * one.grad_norms[s]) << "step " << s;
  }
  EXPECT_EQ(results[0].losses, results[1].losses);  // the summed values are the same bits everywhere
  EXPECT_EQ(results[0].tokens, one.tokens);
  EXPECT_EQ(max_difference(models[0], models[1]), 0.0);  // the ranks stay in step
  EXPECT_LT(max_difference(models[0], whole), 1e-4);     // 5 AdamW steps of lr 1e-3 from one process's
}

// Killed at step 4 on every rank, resumed from rank 0's checkpoint (rank 1 is sent its state): the
// same losses and weights, bit for bit, as the uninterrupted data-parallel run.
TEST(DataParallel, ResumeFromRankZerosCheckpointIsBitExact) {
  const TrainingData data = TrainingData::from_tokens(random_tokens(900, 5), 8);
  test::TempDir dir;
  Transformer straight[2] = {random_model(tiny_config(), 0.2, 1), random_model(tiny_config(), 0.2, 1)};
  TrainResult uninterrupted;
  on_ranks(2, [&](const Communicator& group) {
    TrainOptions o = options();
    o.group = &group;
    Transformer& model = straight[group.rank()];
    const TrainResult r = train(model, data, cross_entropy_loss(model, false), o);
    if (group.writes()) uninterrupted = r;
  });
  Transformer models[2] = {random_model(tiny_config(), 0.2, 1), random_model(tiny_config(), 0.2, 1)};
  EXPECT_THROW(on_ranks(2,
                        [&](const Communicator& group) {
                          TrainOptions o = options();
                          o.group = &group;
                          o.state_path = dir.file("state");
                          o.save_every = 3;
                          Transformer& model = models[group.rank()];
                          const LossFunction plain = cross_entropy_loss(model, false);
                          train(model, data,
                                [&](const Batch& b, int64_t step) -> StepLoss {
                                  if (step == 4) throw std::runtime_error("simulated crash");
                                  return plain(b, step);
                                },
                                o);
                        }),
               std::runtime_error);
  Transformer resumed[2] = {random_model(tiny_config(), 0.2, 3), random_model(tiny_config(), 0.2, 4)};
  TrainResult result;
  on_ranks(2, [&](const Communicator& group) {
    TrainOptions o = options();
    o.group = &group;
    o.state_path = dir.file("state");
    o.save_every = 3;
    o.resume = true;
    Transformer& model = resumed[group.rank()];
    const TrainResult r = train(model, data, cross_entropy_loss(model, false), o);
    if (group.writes()) result = r;
  });
  EXPECT_EQ(result.start_step, 3);
  EXPECT_EQ(result.losses, uninterrupted.losses);
  EXPECT_EQ(max_difference(resumed[0], straight[0]), 0.0);
  EXPECT_EQ(max_difference(resumed[1], straight[0]), 0.0);
}

TEST(DataParallel, AGlobalBatchSmallerThanTheGroupIsRefused) {
  const TrainingData data = TrainingData::from_tokens(random_tokens(300, 6), 8);
  Transformer models[2] = {random_model(tiny_config(), 0.2, 1), random_model(tiny_config(), 0.2, 1)};
  on_ranks(2, [&](const Communicator& group) {
    TrainOptions o = options();
    o.batch_size = 1;
    o.group = &group;
    EXPECT_THROW(train(models[group.rank()], data, cross_entropy_loss(models[group.rank()], false), o), Error);
  });
}

}  // namespace
}  // namespace llmpress

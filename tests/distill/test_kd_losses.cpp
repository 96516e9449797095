// Identities of the distillation losses that need no reference implementation: zero self-divergence, JSD's
// end points and limits, TVD's range, finite differences against autograd (float64), the top-k cache with
// k = V against the full teacher, -inf logits and zero probabilities, masking, scaling and errors.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>

#include "llmpress/core/error.h"
#include "llmpress/distill/losses.h"

namespace llmpress {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

KdOptions options_for(KdDivergence divergence, double beta = 0.5, double alpha = 0.1) {
  KdOptions o;
  o.divergence = divergence;
  o.beta = beta;
  o.skew_alpha = alpha;
  return o;
}

// Every divergence, JSD at its end points and inside, the skews at two alphas.
std::vector<KdOptions> all_divergences() {
  return {options_for(KdDivergence::ForwardKl),           options_for(KdDivergence::ReverseKl),
          options_for(KdDivergence::TotalVariation),      options_for(KdDivergence::SkewKl),
          options_for(KdDivergence::SkewKl, 0.5, 0.5),    options_for(KdDivergence::SkewReverseKl),
          options_for(KdDivergence::GeneralizedJsd, 0.0), options_for(KdDivergence::GeneralizedJsd, 0.3),
          options_for(KdDivergence::GeneralizedJsd, 1.0)};
}

std::string describe(const KdOptions& o) {
  return std::string(kd_divergence_name(o.divergence)) + " beta " + std::to_string(o.beta) + " alpha " +
         std::to_string(o.skew_alpha) + " T " + std::to_string(o.temperature);
}

struct Logits {
  at::Tensor student, teacher, mask, labels;
};

// [2, 4, 11] float64; vocabulary entries 3 and 9 are -inf on both sides at three positions; one position
// unscored.
Logits make_logits(uint64_t seed = 7) {
  at::manual_seed(seed);
  Logits l;
  l.student = at::randn({2, 4, 11}, at::kDouble) * 2;
  l.teacher = at::randn({2, 4, 11}, at::kDouble) * 2;
  for (auto [b, t] : {std::pair<int, int>{0, 1}, {1, 0}, {1, 3}})
    for (int v : {3, 9}) {
      l.student[b][t][v] = -kInf;
      l.teacher[b][t][v] = -kInf;
    }
  l.mask = at::ones({2, 4}, at::kBool);
  l.mask[1][2] = false;
  l.labels = at::randint(0, 3, {2, 4}, at::kLong);  // ids 0..2: never a -inf entry
  return l;
}

bool all_finite(const at::Tensor& t) { return at::isfinite(t).all().item<bool>(); }

// d loss / d student logits by autograd.
at::Tensor gradient(const std::function<at::Tensor(const at::Tensor&)>& loss, const at::Tensor& at_point) {
  const at::Tensor x = at_point.clone().set_requires_grad(true);
  loss(x).backward();
  return x.grad();
}

TEST(DistillLosses, SelfDivergenceIsZeroWithZeroGradient) {
  const Logits l = make_logits();
  for (KdOptions o : all_divergences()) {
    for (double temperature : {1.0, 2.0}) {
      o.temperature = temperature;
      const at::Tensor student = l.student.clone().set_requires_grad(true);
      const KdLossResult r = kd_loss(student, l.student, l.mask, {}, o);
      r.loss.backward();
      EXPECT_NEAR(r.loss.item<double>(), 0, 1e-13) << describe(o);
      EXPECT_LT(student.grad().abs().max().item<double>(), 1e-13) << describe(o);
      // The cached teacher too, at a k that leaves a tail and at k = V.
      for (int64_t k : {int64_t(4), int64_t(11)}) {
        const at::Tensor s2 = l.student.clone().set_requires_grad(true);
        const KdLossResult rk = kd_loss_topk(s2, make_topk_teacher(l.student, k, temperature), l.mask, {}, o);
        rk.loss.backward();
        EXPECT_NEAR(rk.loss.item<double>(), 0, 1e-13) << describe(o) << " k " << k;
        // TVD is not differentiable at p_T = p_S: the buckets of the two sides differ by rounding, and
        // |x|'s gradient there is sign(+-1e-17), a subgradient. Every other loss is smooth with gradient 0.
        if (o.divergence != KdDivergence::TotalVariation) {
          EXPECT_LT(s2.grad().abs().max().item<double>(), 1e-13) << describe(o) << " k " << k;
        }
      }
    }
  }
}

TEST(DistillLosses, SelfDivergenceIsZeroInFloat32) {
  const Logits l = make_logits();
  for (const KdOptions& o : all_divergences()) {
    const at::Tensor s = l.student.to(at::kFloat);
    EXPECT_NEAR(kd_loss(s, s, l.mask, {}, o).loss.item<double>(), 0, 1e-6) << describe(o);
  }
}

TEST(DistillLosses, JsdEndPointsAreTheKlsAndItsRescaledLimits) {
  const Logits l = make_logits();
  const auto value = [&](const KdOptions& o) {
    return kd_loss(l.student, l.teacher, l.mask, {}, o).loss.item<double>();
  };
  const double forward = value(options_for(KdDivergence::ForwardKl));
  const double reverse = value(options_for(KdDivergence::ReverseKl));
  // TRL's special cases: exactly the plain KLs.
  EXPECT_EQ(value(options_for(KdDivergence::GeneralizedJsd, 0.0)), forward);
  EXPECT_EQ(value(options_for(KdDivergence::GeneralizedJsd, 1.0)), reverse);
  // JSD(beta) itself vanishes at both ends (convexity of KL in its second argument bounds it by
  // beta (1 - beta) (KL(p_T || p_S) + KL(p_S || p_T))); JSD/beta -> forward KL and JSD/(1 - beta) -> reverse
  // KL, with an error linear in the distance to the end point.
  double previous_forward_error = kInf, previous_reverse_error = kInf;
  for (double eps : {1e-3, 1e-4, 1e-5, 1e-6}) {
    const double near0 = value(options_for(KdDivergence::GeneralizedJsd, eps));
    const double near1 = value(options_for(KdDivergence::GeneralizedJsd, 1 - eps));
    EXPECT_LE(near0, eps * (1 - eps) * (forward + reverse));
    EXPECT_LE(near1, eps * (1 - eps) * (forward + reverse));
    const double forward_error = std::abs(near0 / eps - forward) / forward;
    const double reverse_error = std::abs(near1 / eps - reverse) / reverse;
    std::printf("beta %g: forward error %.3g, reverse error %.3g\n", eps, forward_error, reverse_error);
    EXPECT_LT(forward_error, previous_forward_error / 5) << eps;
    EXPECT_LT(reverse_error, previous_reverse_error / 5) << eps;
    previous_forward_error = forward_error;
    previous_reverse_error = reverse_error;
  }
  EXPECT_LT(previous_forward_error, 1e-3);
  EXPECT_LT(previous_reverse_error, 1e-3);
}

TEST(DistillLosses, JsdIsTheMixOfTheTwoSkewKls) {
  // beta KL(p_T || M) + (1 - beta) KL(p_S || M) with M = beta p_T + (1 - beta) p_S: the first term is the skew
  // KL at alpha = beta, the second the skew reverse KL at alpha = 1 - beta.
  const Logits l = make_logits();
  const double beta = 0.3;
  const auto value = [&](const KdOptions& o) {
    return kd_loss(l.student, l.teacher, l.mask, {}, o).loss.item<double>();
  };
  const double jsd = value(options_for(KdDivergence::GeneralizedJsd, beta));
  const double skl = value(options_for(KdDivergence::SkewKl, 0.5, beta));
  const double srkl = value(options_for(KdDivergence::SkewReverseKl, 0.5, 1 - beta));
  EXPECT_NEAR(jsd, beta * skl + (1 - beta) * srkl, 1e-14);
  // alpha = 0 is the plain KL, alpha = 1 compares a distribution with itself.
  EXPECT_NEAR(value(options_for(KdDivergence::SkewKl, 0.5, 0.0)), value(options_for(KdDivergence::ForwardKl)), 1e-14);
  EXPECT_NEAR(value(options_for(KdDivergence::SkewReverseKl, 0.5, 0.0)), value(options_for(KdDivergence::ReverseKl)),
              1e-14);
  EXPECT_NEAR(value(options_for(KdDivergence::SkewKl, 0.5, 1.0)), 0, 1e-15);
}

TEST(DistillLosses, TotalVariationIsBetweenZeroAndOne) {
  const KdOptions o = options_for(KdDivergence::TotalVariation);
  for (double scale : {0.1, 1.0, 10.0, 100.0}) {
    at::manual_seed(int64_t(scale * 10));
    const at::Tensor s = at::log_softmax(at::randn({64, 50}, at::kDouble) * scale, -1);
    const at::Tensor t = at::log_softmax(at::randn({64, 50}, at::kDouble) * scale, -1);
    const at::Tensor tvd = kd_divergence(s, t, o);
    EXPECT_GE(tvd.min().item<double>(), 0) << scale;
    EXPECT_LE(tvd.max().item<double>(), 1) << scale;
  }
  // Disjoint supports: exactly 1; the same distribution: exactly 0.
  const at::Tensor a = at::log_softmax(at::tensor({0.0, -kInf, -kInf}, at::kDouble), -1);
  const at::Tensor b = at::log_softmax(at::tensor({-kInf, 1.0, 2.0}, at::kDouble), -1);
  EXPECT_DOUBLE_EQ(kd_divergence(a, b, o).item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(kd_divergence(b, b, o).item<double>(), 0.0);
}

TEST(DistillLosses, AutogradMatchesFiniteDifferences) {
  const Logits l = make_logits(11);
  // Entries to perturb: finite logits at scored positions.
  const std::vector<std::array<int64_t, 3>> entries = {{0, 0, 0}, {0, 1, 4}, {0, 3, 10}, {1, 1, 2}, {1, 3, 8}};
  for (KdOptions o : all_divergences()) {
    for (int variant = 0; variant < 3; ++variant) {
      o.temperature = variant == 0 ? 1.0 : 2.0;
      o.ce_weight = variant == 0 ? 0.0 : 0.25;
      const bool topk = variant == 2;
      const TopKTeacher cache = make_topk_teacher(l.teacher, 4, o.temperature);
      const auto loss = [&](const at::Tensor& s) {
        return topk ? kd_loss_topk(s, cache, l.mask, l.labels, o).loss
                    : kd_loss(s, l.teacher, l.mask, l.labels, o).loss;
      };
      const at::Tensor grad = gradient(loss, l.student);
      ASSERT_TRUE(all_finite(grad)) << describe(o);
      const double h = 1e-6;
      for (const auto& e : entries) {
        at::Tensor plus = l.student.clone(), minus = l.student.clone();
        plus[e[0]][e[1]][e[2]] += h;
        minus[e[0]][e[1]][e[2]] -= h;
        const double numeric = (loss(plus).item<double>() - loss(minus).item<double>()) / (2 * h);
        const double analytic = grad[e[0]][e[1]][e[2]].item<double>();
        EXPECT_NEAR(analytic, numeric, 1e-7 + 1e-6 * std::abs(numeric))
            << describe(o) << (topk ? " top-k" : "") << " entry " << e[0] << "," << e[1] << "," << e[2];
      }
    }
  }
}

TEST(DistillLosses, TopKWithTheWholeVocabularyEqualsTheFullTeacher) {
  const Logits l = make_logits(5);
  for (KdOptions o : all_divergences()) {
    for (double temperature : {1.0, 0.5, 3.0}) {
      o.temperature = temperature;
      o.ce_weight = 0.3;
      const at::Tensor s_full = l.student.clone().set_requires_grad(true);
      const at::Tensor s_topk = l.student.clone().set_requires_grad(true);
      const KdLossResult full = kd_loss(s_full, l.teacher, l.mask, l.labels, o);
      const TopKTeacher cache = make_topk_teacher(l.teacher, 11, temperature);
      EXPECT_TRUE(at::isneginf(cache.log_tail).all().item<bool>());
      const KdLossResult topk = kd_loss_topk(s_topk, cache, l.mask, l.labels, o);
      full.loss.backward();
      topk.loss.backward();
      EXPECT_NEAR(topk.kd.item<double>(), full.kd.item<double>(), 1e-13 * (1 + std::abs(full.kd.item<double>())))
          << describe(o);
      EXPECT_NEAR(topk.loss.item<double>(), full.loss.item<double>(), 1e-13 * (1 + full.loss.item<double>()))
          << describe(o);
      EXPECT_LT((s_topk.grad() - s_full.grad()).abs().max().item<double>(), 1e-13) << describe(o);
      EXPECT_TRUE(all_finite(s_topk.grad())) << describe(o);
      // float32: equal up to float32 rounding.
      const at::Tensor s32 = l.student.to(at::kFloat), t32 = l.teacher.to(at::kFloat);
      const double f32_full = kd_loss(s32, t32, l.mask, l.labels, o).loss.item<double>();
      const double f32_topk = kd_loss_topk(s32, make_topk_teacher(t32, 11, temperature), l.mask, l.labels, o)
                                  .loss.item<double>();
      EXPECT_NEAR(f32_topk, f32_full, 1e-5 * (1 + std::abs(f32_full))) << describe(o);
    }
  }
}

TEST(DistillLosses, TopKIsACoarseGrainingOfTheFullLoss) {
  // Merging the tail into one bucket can only lose information: every divergence here is at most the full
  // one (data processing inequality), and grows towards it as k grows.
  const Logits l = make_logits(3);
  for (const KdOptions& o : all_divergences()) {
    const double full = kd_loss(l.student, l.teacher, l.mask, {}, o).kd.item<double>();
    double previous = 0;
    for (int64_t k : {1, 3, 6, 10}) {
      const TopKTeacher cache = make_topk_teacher(l.teacher, k, 1.0);
      const double coarse = kd_loss_topk(l.student, cache, l.mask, {}, o).kd.item<double>();
      EXPECT_LE(coarse, full + 1e-12) << describe(o) << " k " << k;
      // Merging buckets can only lower an f-divergence, and the top-(k+1) partition refines the top-k one.
      EXPECT_GE(coarse, previous - 1e-12) << describe(o) << " k " << k;
      previous = coarse;
    }
  }
}

TEST(DistillLosses, InfiniteLogitsAndZeroProbabilitiesGiveNoNan) {
  const Logits base = make_logits(9);
  struct Variant {
    const char* what;
    bool student_only, teacher_only;
  };
  for (const Variant v : {Variant{"both sides masked", false, false}, Variant{"student only", true, false},
                          Variant{"teacher only", false, true}}) {
    Logits l = base;
    l.student = base.student.clone();
    l.teacher = base.teacher.clone();
    if (v.student_only) l.student.select(2, 5).fill_(-kInf);
    if (v.teacher_only) l.teacher.select(2, 5).fill_(-kInf);
    // Probabilities that underflow to exactly 0 from finite logits, and an unscored all -inf position.
    l.teacher[0][2][6] = -1e4;
    l.student[0][3][6] = -1e4;
    l.student[1][2].fill_(-kInf);
    l.teacher[1][2].fill_(-kInf);
    for (KdOptions o : all_divergences()) {
      for (double temperature : {1.0, 2.0}) {
        o.temperature = temperature;
        o.ce_weight = 0.2;
        for (bool topk : {false, true}) {
          const at::Tensor s = l.student.clone().set_requires_grad(true);
          const KdLossResult r = topk ? kd_loss_topk(s, make_topk_teacher(l.teacher, 11, temperature), l.mask,
                                                     l.labels, o)
                                      : kd_loss(s, l.teacher, l.mask, l.labels, o);
          const double value = r.kd.item<double>();
          const std::string label = describe(o) + ", " + v.what + (topk ? ", top-k" : "");
          ASSERT_FALSE(std::isnan(value)) << label;
          // Infinite exactly where the divergence is: p_T > 0 where p_S = 0 (forward KL), or the other way.
          const bool forward = o.divergence == KdDivergence::ForwardKl ||
                               (o.divergence == KdDivergence::GeneralizedJsd && o.beta == 0);
          const bool reverse = o.divergence == KdDivergence::ReverseKl ||
                               (o.divergence == KdDivergence::GeneralizedJsd && o.beta == 1);
          if ((forward && v.student_only) || (reverse && v.teacher_only)) {
            EXPECT_EQ(value, kInf) << label;
            continue;
          }
          EXPECT_TRUE(std::isfinite(value)) << label;
          r.loss.backward();
          EXPECT_TRUE(all_finite(s.grad())) << label;
          // A -inf student logit gets no gradient; nor does any unscored position.
          EXPECT_EQ(s.grad()[0][1][3].item<double>(), 0) << label;
          EXPECT_EQ(s.grad()[1][2].abs().max().item<double>(), 0) << label;
        }
      }
    }
  }
}

TEST(DistillLosses, MaskedPositionsAreLeftOut) {
  const Logits l = make_logits();
  for (KdOptions o : all_divergences()) {
    o.temperature = 1.5;
    o.ce_weight = 0.4;
    const double masked = kd_loss(l.student, l.teacher, l.mask, l.labels, o).loss.item<double>();
    // The same positions gathered by hand, every one scored.
    const at::Tensor index = l.mask.reshape({-1}).nonzero().squeeze(1);
    const auto pick = [&](const at::Tensor& x) { return x.reshape({8, -1}).index_select(0, index).unsqueeze(0); };
    const double gathered =
        kd_loss(pick(l.student), pick(l.teacher), {}, pick(l.labels).squeeze(-1), o).loss.item<double>();
    EXPECT_NEAR(masked, gathered, 1e-14) << describe(o);
  }
  // A 0/1 float mask means the same as a bool one.
  const KdOptions o = options_for(KdDivergence::ReverseKl);
  EXPECT_EQ(kd_loss(l.student, l.teacher, l.mask.to(at::kFloat), {}, o).loss.item<double>(),
            kd_loss(l.student, l.teacher, l.mask, {}, o).loss.item<double>());
  // Nothing scored: zero loss and a zero gradient, not NaN.
  const at::Tensor s = l.student.clone().set_requires_grad(true);
  KdOptions with_ce = o;
  with_ce.ce_weight = 0.5;
  const KdLossResult none = kd_loss(s, l.teacher, at::zeros({2, 4}, at::kBool), l.labels, with_ce);
  none.loss.backward();
  EXPECT_EQ(none.tokens, 0);
  EXPECT_EQ(none.loss.item<double>(), 0);
  EXPECT_EQ(s.grad().abs().max().item<double>(), 0);
}

TEST(DistillLosses, TemperatureScaleAndCrossEntropyMix) {
  const Logits l = make_logits();
  for (KdOptions o : all_divergences()) {
    o.temperature = 3.0;
    o.scale_by_temperature = false;
    const double plain = kd_loss(l.student, l.teacher, l.mask, {}, o).loss.item<double>();
    o.scale_by_temperature = true;
    const double scaled = kd_loss(l.student, l.teacher, l.mask, {}, o).loss.item<double>();
    const double expected_scale = o.divergence == KdDivergence::TotalVariation ? 3.0 : 9.0;
    EXPECT_NEAR(scaled, expected_scale * plain, 1e-13 * scaled) << describe(o);
    // loss = w CE + (1 - w) KD, CE untempered and token-averaged as torch's cross_entropy.
    o.ce_weight = 0.3;
    const KdLossResult r = kd_loss(l.student, l.teacher, l.mask, l.labels, o);
    EXPECT_NEAR(r.kd.item<double>(), scaled, 1e-14 * scaled);
    const at::Tensor index = l.mask.reshape({-1}).nonzero().squeeze(1);
    const double ce = at::nll_loss(at::log_softmax(l.student.reshape({8, 11}).index_select(0, index), -1),
                                   l.labels.reshape({8}).index_select(0, index))
                          .item<double>();
    EXPECT_NEAR(r.ce.item<double>(), ce, 1e-14);
    EXPECT_NEAR(r.loss.item<double>(), 0.3 * ce + 0.7 * scaled, 1e-13);
    EXPECT_EQ(r.tokens, 7);
  }
  // ce_weight 1: hard labels alone.
  KdOptions only_ce;
  only_ce.ce_weight = 1;
  const KdLossResult r = kd_loss(l.student, l.teacher, l.mask, l.labels, only_ce);
  EXPECT_EQ(r.loss.item<double>(), r.ce.item<double>());
}

TEST(DistillLosses, TeacherGetsNoGradientAndLowPrecisionStudentsWork) {
  const Logits l = make_logits();
  const at::Tensor teacher = l.teacher.clone().set_requires_grad(true);
  const at::Tensor student = l.student.to(at::kBFloat16).set_requires_grad(true);
  const KdLossResult r = kd_loss(student, teacher, l.mask, {}, options_for(KdDivergence::GeneralizedJsd));
  EXPECT_EQ(r.loss.scalar_type(), at::kFloat);
  r.loss.backward();
  EXPECT_FALSE(teacher.grad().defined());
  ASSERT_TRUE(student.grad().defined());
  EXPECT_EQ(student.grad().scalar_type(), at::kBFloat16);
  EXPECT_TRUE(all_finite(student.grad().to(at::kFloat)));
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(DistillLosses, ErrorsNameTheProblem) {
  const Logits l = make_logits();
  const KdOptions o;
  const at::Tensor wide = at::randn({2, 4, 12}, at::kDouble);
  EXPECT_NE(error_of([&] { kd_loss(l.student, wide, l.mask, {}, o); }).find("student has 11 entries, teacher 12"),
            std::string::npos);
  EXPECT_NE(error_of([&] { kd_loss(l.student, at::randn({2, 5, 11}), l.mask, {}, o); }).find("[2, 5, 11]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { kd_loss(l.student.reshape({8, 11}), l.teacher, {}, {}, o); }).find("[B, T, V]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { kd_loss(l.student, l.teacher, at::ones({4, 2}, at::kBool), {}, o); }).find("mask"),
            std::string::npos);
  KdOptions with_ce;
  with_ce.ce_weight = 0.5;
  EXPECT_NE(error_of([&] { kd_loss(l.student, l.teacher, l.mask, {}, with_ce); }).find("labels"), std::string::npos);
  at::Tensor labels = l.labels.clone();
  labels[0][0] = 11;
  EXPECT_NE(error_of([&] { kd_loss(l.student, l.teacher, l.mask, labels, with_ce); }).find("label 11"),
            std::string::npos);
  labels[0][0] = -100;  // fine where unscored
  at::Tensor mask = l.mask.clone();
  mask[0][0] = false;
  EXPECT_NO_THROW(kd_loss(l.student, l.teacher, mask, labels, with_ce));
  KdOptions bad;
  bad.temperature = 0;
  EXPECT_NE(error_of([&] { check_kd_options(bad); }).find("temperature"), std::string::npos);
  bad = KdOptions();
  bad.beta = 1.5;
  EXPECT_NE(error_of([&] { check_kd_options(bad); }).find("beta"), std::string::npos);
  bad = KdOptions();
  bad.ce_weight = -0.1;
  EXPECT_NE(error_of([&] { check_kd_options(bad); }).find("ce_weight"), std::string::npos);
  EXPECT_NE(error_of([&] { parse_kd_divergence("kl"); }).find("fkl, rkl"), std::string::npos);

  // Top-k cache.
  TopKTeacher cache = make_topk_teacher(l.teacher, 4, 2.0);
  EXPECT_NE(error_of([&] { kd_loss_topk(l.student, cache, l.mask, {}, o); }).find("temperature 2"), std::string::npos);
  KdOptions at2;
  at2.temperature = 2.0;
  EXPECT_NE(error_of([&] { kd_loss_topk(wide, cache, l.mask, {}, at2); }).find("student has 12 entries"),
            std::string::npos);
  TopKTeacher repeated = cache;
  repeated.ids = cache.ids.clone();
  repeated.ids.select(2, 1).copy_(repeated.ids.select(2, 0));
  EXPECT_NE(error_of([&] { kd_loss_topk(l.student, repeated, l.mask, {}, at2); }).find("repeat"), std::string::npos);
  TopKTeacher outside = cache;
  outside.ids = cache.ids.clone();
  outside.ids[0][0][0] = 11;
  EXPECT_NE(error_of([&] { kd_loss_topk(l.student, outside, l.mask, {}, at2); }).find("top-k id 11"),
            std::string::npos);
  EXPECT_NE(error_of([&] { make_topk_teacher(l.teacher, 12, 1.0); }).find("1 <= k <= V = 11"), std::string::npos);

  // Hidden states.
  const at::Tensor hs = at::randn({2, 4, 6}), ht = at::randn({2, 4, 10});
  EXPECT_NE(error_of([&] { hidden_state_loss(hs, ht, {}, HiddenLoss::Mse); }).find("student 6, teacher 10"),
            std::string::npos);
  EXPECT_NE(error_of([&] { hidden_state_loss(hs, ht, {}, HiddenLoss::Mse, at::randn({6, 10})); }).find("[10, 6]"),
            std::string::npos);
}

TEST(DistillLosses, DivergenceNamesRoundTrip) {
  for (const KdOptions& o : all_divergences())
    EXPECT_EQ(parse_kd_divergence(kd_divergence_name(o.divergence)), o.divergence);
  EXPECT_EQ(parse_kd_divergence("sfkl"), KdDivergence::SkewKl);
}

// ---- hidden states -----------------------------------------------------------------------------------

TEST(DistillHidden, ZeroForMatchingStatesAndParallelVectors) {
  at::manual_seed(1);
  const at::Tensor h = at::randn({2, 3, 8}, at::kDouble);
  EXPECT_EQ(hidden_state_loss(h, h, {}, HiddenLoss::Mse).item<double>(), 0);
  EXPECT_NEAR(hidden_state_loss(h * 3.5, h, {}, HiddenLoss::Cosine).item<double>(), 0, 1e-14);
  EXPECT_NEAR(hidden_state_loss(-h, h, {}, HiddenLoss::Cosine).item<double>(), 2, 1e-14);
  // MSE is the mean over the hidden dimension, then over scored tokens.
  const at::Tensor mask = at::tensor({1, 0, 1, 1, 1, 0}).to(at::kBool).reshape({2, 3});
  const at::Tensor g = at::randn({2, 3, 8}, at::kDouble);
  const double expected = (h - g).pow(2).mean(-1).masked_select(mask).mean().item<double>();
  EXPECT_NEAR(hidden_state_loss(h, g, mask, HiddenLoss::Mse).item<double>(), expected, 1e-15);
}

TEST(DistillHidden, ProjectionIsTrainedAndMatchesFiniteDifferences) {
  at::manual_seed(2);
  const at::Tensor hs = at::randn({2, 3, 5}, at::kDouble), ht = at::randn({2, 3, 7}, at::kDouble);
  const at::Tensor mask = at::tensor({1, 1, 0, 1, 0, 1}).to(at::kBool).reshape({2, 3});
  const at::Tensor projection = make_hidden_projection(7, 5, at::kDouble);
  ASSERT_TRUE(projection.requires_grad());
  EXPECT_EQ(projection.sizes(), (std::vector<int64_t>{7, 5}));
  EXPECT_LE(projection.abs().max().item<double>(), 1 / std::sqrt(5.0));
  for (HiddenLoss kind : {HiddenLoss::Mse, HiddenLoss::Cosine}) {
    const at::Tensor s = hs.clone().set_requires_grad(true);
    const at::Tensor p = projection.detach().clone().set_requires_grad(true);
    hidden_state_loss(s, ht, mask, kind, p).backward();
    const double h = 1e-6;
    for (auto [i, j] : {std::pair<int, int>{0, 0}, {3, 4}, {6, 2}}) {
      at::Tensor plus = projection.detach().clone(), minus = plus.clone();
      plus[i][j] += h;
      minus[i][j] -= h;
      const double numeric = (hidden_state_loss(hs, ht, mask, kind, plus).item<double>() -
                              hidden_state_loss(hs, ht, mask, kind, minus).item<double>()) /
                             (2 * h);
      EXPECT_NEAR(p.grad()[i][j].item<double>(), numeric, 1e-7 + 1e-6 * std::abs(numeric));
    }
    for (auto [t, d] : {std::pair<int, int>{0, 1}, {3, 4}}) {
      at::Tensor plus = hs.clone(), minus = hs.clone();
      plus.reshape({6, 5})[t][d] += h;
      minus.reshape({6, 5})[t][d] -= h;
      const double numeric = (hidden_state_loss(plus, ht, mask, kind, projection.detach()).item<double>() -
                              hidden_state_loss(minus, ht, mask, kind, projection.detach()).item<double>()) /
                             (2 * h);
      EXPECT_NEAR(s.grad().reshape({6, 5})[t][d].item<double>(), numeric, 1e-7 + 1e-6 * std::abs(numeric));
    }
    // Unscored positions get no gradient.
    EXPECT_EQ(s.grad()[0][2].abs().max().item<double>(), 0);
  }
}

TEST(DistillHidden, LayerPairs) {
  EXPECT_EQ(uniform_layer_pairs(4, 12), (std::vector<std::pair<int64_t, int64_t>>{{0, 2}, {1, 5}, {2, 8}, {3, 11}}));
  EXPECT_EQ(uniform_layer_pairs(3, 3), (std::vector<std::pair<int64_t, int64_t>>{{0, 0}, {1, 1}, {2, 2}}));
  EXPECT_THROW(uniform_layer_pairs(5, 4), Error);
  at::manual_seed(3);
  std::vector<at::Tensor> student, teacher;
  for (int i = 0; i < 2; ++i) student.push_back(at::randn({1, 3, 4}, at::kDouble));
  for (int i = 0; i < 4; ++i) teacher.push_back(at::randn({1, 3, 6}, at::kDouble));
  const auto pairs = uniform_layer_pairs(2, 4);
  const at::Tensor shared = make_hidden_projection(6, 4, at::kDouble);
  const double both = hidden_state_loss(student, teacher, pairs, {}, HiddenLoss::Cosine, {shared}).item<double>();
  const double first = hidden_state_loss(student[0], teacher[1], {}, HiddenLoss::Cosine, shared).item<double>();
  const double second = hidden_state_loss(student[1], teacher[3], {}, HiddenLoss::Cosine, shared).item<double>();
  EXPECT_NEAR(both, (first + second) / 2, 1e-15);
  EXPECT_THROW(hidden_state_loss(student, teacher, {{0, 4}}, {}, HiddenLoss::Mse, {shared}), Error);
  EXPECT_THROW(hidden_state_loss(student, teacher, pairs, {}, HiddenLoss::Mse, {shared, shared, shared}), Error);
}

}  // namespace
}  // namespace llmpress

// The distillation losses against an independent PyTorch implementation (kd_losses_reference.py beside this
// file, run with Debian's /usr/bin/python3 and its python3-torch): loss values and gradients with respect to
// the student logits, the student hidden states and the projection, in float64 and in float32. Skips when
// /usr/bin/python3 (or LLMPRESS_TORCH_PYTHON) or its torch is absent (scripts/setup.sh installs python3-torch).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "llmpress/distill/losses.h"
#include "test_util.h"
#include "torch_reference.h"

namespace llmpress {
namespace {

using nlohmann::json;

using test::torch_python;
using test::torch_reference_unavailable;
constexpr double kRelTolerance = 1e-5;  // loss: relative; gradients: max abs difference / max |reference|
constexpr int64_t kB = 3, kT = 6, kV = 37, kTopK = 5;

// Tensors as raw little-endian files plus their dtype and shape in meta.json.
class Dump {
 public:
  explicit Dump(const test::TempDir& dir) : dir_(dir) {}
  void add(const std::string& name, const at::Tensor& tensor) {
    at::Tensor t = tensor.detach().contiguous();
    std::string dtype;
    if (at::isFloatingType(t.scalar_type())) {
      t = t.to(at::kDouble);  // float32 data is stored as its exact float64 value
      dtype = "float64";
    } else if (t.scalar_type() == at::kBool || t.scalar_type() == at::kByte) {
      t = t.to(at::kByte);
      dtype = "uint8";
    } else {
      t = t.to(at::kLong);
      dtype = "int64";
    }
    std::ofstream(dir_.file(name + ".bin"), std::ios::binary)
        .write(static_cast<const char*>(t.data_ptr()), std::streamsize(t.nbytes()));
    meta["tensors"][name] = {{"file", name + ".bin"}, {"dtype", dtype}, {"shape", t.sizes().vec()}};
  }
  json meta;

 private:
  const test::TempDir& dir_;
};

at::Tensor read_doubles(const std::string& path, at::IntArrayRef shape) {
  at::Tensor t = at::empty(shape, at::kDouble);
  std::ifstream in(path, std::ios::binary);
  in.read(static_cast<char*>(t.data_ptr()), std::streamsize(t.nbytes()));
  EXPECT_TRUE(in.good()) << path;
  return t;
}

double relative(double ours, double reference) {
  return std::abs(ours - reference) / std::max(std::abs(reference), 1e-12);
}

double relative(const at::Tensor& ours, const at::Tensor& reference) {
  const double scale = std::max(reference.abs().max().item<double>(), 1e-12);
  return (ours.to(at::kDouble) - reference).abs().max().item<double>() / scale;
}

struct Case {
  KdOptions options;
  bool topk = false;
};

std::vector<Case> loss_cases() {
  struct Kind {
    KdDivergence divergence;
    double beta, alpha;
  };
  const std::vector<Kind> kinds = {
      {KdDivergence::ForwardKl, 0.5, 0.1},      {KdDivergence::ReverseKl, 0.5, 0.1},
      {KdDivergence::TotalVariation, 0.5, 0.1}, {KdDivergence::SkewKl, 0.5, 0.1},
      {KdDivergence::SkewKl, 0.5, 0.5},         {KdDivergence::SkewReverseKl, 0.5, 0.1},
      {KdDivergence::GeneralizedJsd, 0.0, 0.1}, {KdDivergence::GeneralizedJsd, 0.1, 0.1},
      {KdDivergence::GeneralizedJsd, 0.5, 0.1}, {KdDivergence::GeneralizedJsd, 0.9, 0.1},
      {KdDivergence::GeneralizedJsd, 1.0, 0.1}};
  std::vector<Case> cases;
  for (const Kind& kind : kinds) {
    KdOptions o;
    o.divergence = kind.divergence;
    o.beta = kind.beta;
    o.skew_alpha = kind.alpha;
    cases.push_back({o, false});  // T = 1
    o.temperature = 2.0;
    o.ce_weight = 0.3;
    cases.push_back({o, false});
    cases.push_back({o, true});   // top-k cache at T = 2
    o.temperature = 0.7;
    o.ce_weight = 0;
    o.scale_by_temperature = false;
    cases.push_back({o, false});
  }
  return cases;
}

struct Data {
  at::Tensor student, teacher, mask, labels;
  at::Tensor hs, ht, ht_same, projection;
};

// Random logits with masked vocabulary entries (-inf on both sides), an unscored position whose logits are
// all -inf, unscored positions with label -100, and hidden states of two widths.
Data make_data(at::ScalarType dtype) {
  at::manual_seed(20240611);
  const double inf = std::numeric_limits<double>::infinity();
  Data d;
  d.student = at::randn({kB, kT, kV}, at::kDouble) * 3;
  d.teacher = at::randn({kB, kT, kV}, at::kDouble) * 3 + d.student * 0.5;
  d.mask = at::rand({kB, kT}, at::kDouble) < 0.75;
  d.mask[0][0] = true;
  d.mask[2][5] = false;
  d.labels = at::randint(0, kV - 3, {kB, kT}, at::kLong);
  for (int64_t b = 0; b < kB; ++b)
    for (int64_t t = 0; t < kT; ++t)
      if ((b + t) % 3 == 0)
        for (int64_t v : {int64_t(7), kV - 2, kV - 1}) {
          d.student[b][t][v] = -inf;
          d.teacher[b][t][v] = -inf;
          if (d.labels[b][t].item<int64_t>() == 7) d.labels[b][t] = 0;
        }
  d.student[2][5].fill_(-inf);
  d.teacher[2][5].fill_(-inf);
  d.labels.masked_fill_(d.mask.logical_not(), -100);
  d.student = d.student.to(dtype);
  d.teacher = d.teacher.to(dtype);
  d.hs = at::randn({kB, kT, 8}, at::kDouble).to(dtype);
  d.ht = at::randn({kB, kT, 12}, at::kDouble).to(dtype);
  d.ht_same = (d.hs.to(at::kDouble) * 0.7 + at::randn({kB, kT, 8}, at::kDouble)).to(dtype);
  d.projection = (at::randn({12, 8}, at::kDouble) * 0.3).to(dtype);
  return d;
}

void check_against_reference(at::ScalarType dtype) {
  const Data d = make_data(dtype);
  const std::vector<Case> cases = loss_cases();
  const TopKTeacher cache = make_topk_teacher(d.teacher, kTopK, 2.0);

  test::TempDir dir;
  Dump dump(dir);
  dump.add("student", d.student);
  dump.add("teacher", d.teacher);
  dump.add("mask", d.mask);
  dump.add("labels", d.labels);
  dump.add("topk_ids", cache.ids);
  dump.add("topk_logprobs", cache.logprobs);
  dump.add("topk_log_tail", cache.log_tail);
  dump.add("hs", d.hs);
  dump.add("ht", d.ht);
  dump.add("ht_same", d.ht_same);
  dump.add("projection", d.projection);
  dump.meta["cases"] = json::array();
  for (const Case& c : cases)
    dump.meta["cases"].push_back({{"divergence", kd_divergence_name(c.options.divergence)},
                                  {"temperature", c.options.temperature},
                                  {"scale", c.options.scale_by_temperature},
                                  {"beta", c.options.beta},
                                  {"alpha", c.options.skew_alpha},
                                  {"ce_weight", c.options.ce_weight},
                                  {"topk", c.topk}});
  struct HiddenCase {
    HiddenLoss kind;
    bool projection;
  };
  const std::vector<HiddenCase> hidden = {
      {HiddenLoss::Mse, true}, {HiddenLoss::Cosine, true}, {HiddenLoss::Mse, false}, {HiddenLoss::Cosine, false}};
  dump.meta["hidden_cases"] = json::array();
  for (const HiddenCase& h : hidden) {
    json entry = {{"kind", h.kind == HiddenLoss::Mse ? "mse" : "cosine"},
                  {"student", "hs"},
                  {"teacher", h.projection ? "ht" : "ht_same"}};
    if (h.projection) entry["projection"] = "projection";
    dump.meta["hidden_cases"].push_back(entry);
  }
  std::ofstream(dir.file("meta.json")) << dump.meta.dump();

  const std::string script = (std::filesystem::path(__FILE__).parent_path() / "kd_losses_reference.py").string();
  const std::string command =
      torch_python() + " " + script + " " + dir.path() + " > " + dir.file("log") + " 2>&1";
  const int status = std::system(command.c_str());
  std::ifstream log_file(dir.file("log"));
  const std::string log((std::istreambuf_iterator<char>(log_file)), std::istreambuf_iterator<char>());
  ASSERT_EQ(status, 0) << command << "\n" << log;
  const json results = json::parse(std::ifstream(dir.file("results.json")));
  ASSERT_EQ(results["cases"].size(), cases.size());

  double worst_loss = 0, worst_grad = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const std::string label = std::string(kd_divergence_name(c.options.divergence)) + " beta " +
                              std::to_string(c.options.beta) + " alpha " + std::to_string(c.options.skew_alpha) +
                              " T " + std::to_string(c.options.temperature) + (c.topk ? " top-k" : "") + " ce " +
                              std::to_string(c.options.ce_weight);
    const at::Tensor student = d.student.clone().set_requires_grad(true);
    const KdLossResult ours = c.topk ? kd_loss_topk(student, cache, d.mask, d.labels, c.options)
                                     : kd_loss(student, d.teacher, d.mask, d.labels, c.options);
    ours.loss.backward();
    const json& ref = results["cases"][i];
    const double e_loss = relative(ours.loss.item<double>(), ref["loss"].get<double>());
    const double e_kd = relative(ours.kd.item<double>(), ref["kd"].get<double>());
    const at::Tensor ref_grad = read_doubles(dir.file("grad_" + std::to_string(i) + ".bin"), {kB, kT, kV});
    ASSERT_TRUE(student.grad().defined()) << label;
    const double e_grad = relative(student.grad(), ref_grad);
    EXPECT_LT(e_loss, kRelTolerance) << label << ": loss " << ours.loss.item<double>() << " vs " << ref["loss"];
    EXPECT_LT(e_kd, kRelTolerance) << label << ": kd " << ours.kd.item<double>() << " vs " << ref["kd"];
    EXPECT_LT(e_grad, kRelTolerance) << label << ": gradient";
    if (c.options.ce_weight > 0) {
      EXPECT_LT(relative(ours.ce.item<double>(), ref["ce"].get<double>()), kRelTolerance) << label << ": ce";
    }
    EXPECT_TRUE(at::isfinite(student.grad()).all().item<bool>()) << label;
    worst_loss = std::max({worst_loss, e_loss, e_kd});
    worst_grad = std::max(worst_grad, e_grad);
  }

  double worst_hidden = 0;
  for (size_t i = 0; i < hidden.size(); ++i) {
    const at::Tensor hs = d.hs.clone().set_requires_grad(true);
    const at::Tensor projection = d.projection.clone().set_requires_grad(true);
    const at::Tensor loss = hidden_state_loss(hs, hidden[i].projection ? d.ht : d.ht_same, d.mask, hidden[i].kind,
                                              hidden[i].projection ? projection : at::Tensor());
    loss.backward();
    const std::string prefix = dir.file("hgrad_" + std::to_string(i));
    const double e_loss = relative(loss.item<double>(), results["hidden"][i]["loss"].get<double>());
    const double e_grad = relative(hs.grad(), read_doubles(prefix + "_s.bin", {kB, kT, 8}));
    EXPECT_LT(e_loss, kRelTolerance) << "hidden case " << i;
    EXPECT_LT(e_grad, kRelTolerance) << "hidden case " << i << ": student gradient";
    worst_hidden = std::max({worst_hidden, e_loss, e_grad});
    if (hidden[i].projection) {
      const double e_proj = relative(projection.grad(), read_doubles(prefix + "_p.bin", {12, 8}));
      EXPECT_LT(e_proj, kRelTolerance) << "hidden case " << i << ": projection gradient";
      worst_hidden = std::max(worst_hidden, e_proj);
    }
  }
  std::printf("%s: %zu loss cases, max relative error: loss %.3g, gradient %.3g; %zu hidden cases %.3g\n",
              dtype == at::kDouble ? "float64" : "float32", cases.size(), worst_loss, worst_grad, hidden.size(),
              worst_hidden);
}

TEST(DistillLossesReference, MatchesPyTorchInFloat64) {
  if (const std::string why = torch_reference_unavailable(); !why.empty())
    GTEST_SKIP() << why << ": the PyTorch reference for the distillation losses needs Debian's python3-torch "
                 << "(bash scripts/setup.sh installs it)";
  check_against_reference(at::kDouble);
}

TEST(DistillLossesReference, MatchesPyTorchInFloat32) {
  if (const std::string why = torch_reference_unavailable(); !why.empty())
    GTEST_SKIP() << why << ": the PyTorch reference for the distillation losses needs Debian's python3-torch "
                 << "(bash scripts/setup.sh installs it)";
  check_against_reference(at::kFloat);
}

}  // namespace
}  // namespace llmpress

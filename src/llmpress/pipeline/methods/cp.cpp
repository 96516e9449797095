// CP (CANDECOMP/PARAFAC) decomposition of the attention projections, seen as 3-way tensors with a
// head mode: q/k/v_proj [heads * head_dim, hidden] as [heads, head_dim, hidden], o_proj
// [hidden, heads * head_dim] as [hidden, heads, head_dim]. The rank is the largest whose
// parameters fit `ratio` of the matrix; CP-ALS (lowrank/cp.h) fits it. The MLP stays dense.
//
// A whole method in one file: its weight kind (CpWeight, registered for resume files and stage
// outputs), its compressor and its registration.
#include "llmpress/core/error.h"
#include "llmpress/core/log.h"
#include "llmpress/lowrank/cp.h"
#include "llmpress/pipeline/method.h"

namespace llmpress {

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// A matrix stored as CP factors; like TuckerWeight it keeps the reconstructed matrix for the
// forward pass, so it saves storage and export size, not runtime memory.
class CpWeight : public LinearWeight {
 public:
  CpWeight(CpDecomposition cp, int64_t out, int64_t in, const at::Device& device) : cp_(std::move(cp)) {
    const at::Tensor full = cp_.reconstruct();
    if (full.numel() != out * in) throw Error("cp weight: the decomposed tensor does not have out x in elements");
    dense_ = full.reshape({out, in}).to(device, at::kFloat).contiguous();
  }
  at::Tensor forward(const at::Tensor& x) const override { return at::linear(x, dense_.to(x.scalar_type())); }
  int64_t in_features() const override { return dense_.size(1); }
  int64_t out_features() const override { return dense_.size(0); }
  int64_t parameter_count() const override { return cp_.parameter_count(); }
  int64_t storage_bits() const override { return parameter_count() * 16; }
  at::Tensor dense() const override { return dense_; }
  std::string kind() const override { return "cp"; }
  WeightState save() const override {
    WeightState state{"cp", {{"matrix_shape", {out_features(), in_features()}}}, {{"weights", cp_.weights}}};
    for (size_t n = 0; n < cp_.factors.size(); ++n) state.tensors["factor" + std::to_string(n)] = cp_.factors[n];
    return state;
  }

 private:
  CpDecomposition cp_;
  at::Tensor dense_;
};

const WeightKindRegistration cp_kind("cp", [](const WeightState& state) -> std::shared_ptr<LinearWeight> {
  CpDecomposition cp;
  cp.weights = state.tensor("weights");
  for (int n = 0; state.tensors.count("factor" + std::to_string(n)); ++n)
    cp.factors.push_back(state.tensor("factor" + std::to_string(n)));
  if (cp.factors.size() < 3) throw Error("saved cp weight has fewer than 3 factors");
  const auto shape = state.meta.at("matrix_shape").get<std::vector<int64_t>>();
  if (shape.size() != 2) throw Error("saved cp weight has a bad matrix_shape");
  return std::make_shared<CpWeight>(cp, shape[0], shape[1], cp.weights.device());
});

class CpCompressor : public Compressor {
 public:
  CpCompressor(double ratio, int64_t head_dim, int64_t iterations)
      : ratio_(ratio), head_dim_(head_dim), iterations_(iterations) {}
  std::string describe() const override {
    return strprintf("cp (attention heads) ratio %g als %lld", ratio_, (long long)iterations_);
  }
  StatsRequest needs() const override { return {}; }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear, const InputStats&) override {
    const int64_t out = linear.weight->out_features(), in = linear.weight->in_features();
    std::vector<int64_t> shape;
    if (ends_with(name, "q_proj") || ends_with(name, "k_proj") || ends_with(name, "v_proj")) {
      if (out % head_dim_ != 0) return linear.weight;
      shape = {out / head_dim_, head_dim_, in};
    } else if (ends_with(name, "o_proj")) {
      if (in % head_dim_ != 0) return linear.weight;
      shape = {out, in / head_dim_, head_dim_};
    } else {
      return linear.weight;
    }
    // A rank-R CP of an I x J x K tensor stores R (I + J + K + 1) values.
    const int64_t rank = int64_t(ratio_ * double(out) * double(in) / double(shape[0] + shape[1] + shape[2] + 1));
    if (rank < 1) return linear.weight;
    CpOptions options;
    options.rank = rank;
    options.max_iterations = iterations_;
    options.tolerance = 1e-8;
    const at::Tensor w = linear.weight->dense();
    return std::make_shared<CpWeight>(cp_als(w.to(at::kDouble).reshape(shape), options), out, in, w.device());
  }

 private:
  double ratio_;
  int64_t head_dim_, iterations_;
};

MethodSpec cp_method() {
  MethodSpec m;
  m.name = "cp";
  m.family = "lowrank";
  m.summary = "CP-ALS decomposition of the attention projections (MLP dense)";
  m.options = {{"ratio", OptionType::Number, nullptr, "fraction of each attention projection's parameters kept"},
               {"iterations", OptionType::Integer, 100, "ALS sweeps at most"}};
  m.needs_calibration = [](const StageOptions&) { return false; };
  m.check = [](const StageOptions& o, ModelState& state) {
    if (state.quantized || state.factorized)
      throw o.error("ratio", "cp factorizes float weights: it cannot follow a quantization or low-rank stage");
    if (!o.given("ratio") || !(o.number("ratio") > 0)) throw o.error("ratio", "cp needs a ratio > 0");
    if (o.integer("iterations") < 1) throw o.error("iterations", "iterations must be >= 1");
    state.pruned = false;
    state.factorized = true;
  };
  m.compressor = [](const StageOptions& o, const StageContext& context) -> std::unique_ptr<Compressor> {
    return std::make_unique<CpCompressor>(o.number("ratio"), context.config.head_dim, o.integer("iterations"));
  };
  return m;
}

const MethodRegistration cp(cp_method());

}  // namespace

}  // namespace llmpress

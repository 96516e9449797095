#include "llmpress/distill/losses.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "llmpress/core/error.h"

namespace llmpress {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

std::string shape_of(const at::Tensor& t) {
  std::ostringstream out;
  out << "[";
  for (int64_t d = 0; d < t.dim(); ++d) out << (d ? ", " : "") << t.size(d);
  out << "]";
  return out.str();
}

// float64 stays float64; everything else (bf16, fp16, fp32) is computed in float32.
at::ScalarType compute_dtype(const at::Tensor& t) { return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

// logsumexp over `dim` that is -inf with a zero gradient for a slice that is entirely -inf (at::logsumexp
// gives the right value there but a NaN gradient: exp(-inf - -inf)). The shift is detached: logsumexp is
// shift invariant, so the gradient is still exactly softmax(x).
at::Tensor safe_logsumexp(const at::Tensor& x, int64_t dim) {
  at::Tensor shift = at::amax(x.detach(), {dim}, /*keepdim=*/true);
  shift = shift.masked_fill(shift == kNegInf, 0);
  const at::Tensor sum = at::exp(x - shift).sum(dim);
  const at::Tensor empty = sum == 0;
  return (at::log(sum.masked_fill(empty, 1)) + shift.squeeze(dim)).masked_fill(empty, kNegInf);
}

// log(w p + (1 - w) q), elementwise, from log p and log q.
at::Tensor log_mixture(const at::Tensor& logp, const at::Tensor& logq, double w) {
  return safe_logsumexp(at::stack({logp + std::log(w), logq + std::log1p(-w)}), 0);
}

// KL(p || q) per row: sum over the last dim of p (log p - log q), p = exp(log p). Entries with p = 0 are
// exactly 0, and so is their gradient: the log-ratio is masked before it is weighted, so no 0 * inf (or
// 0 * NaN from -inf - -inf) reaches the forward value or the backward pass.
at::Tensor kl_rows(const at::Tensor& logp, const at::Tensor& logq) {
  const at::Tensor ratio = (logp - logq).masked_fill(logp == kNegInf, 0);
  return (at::exp(logp) * ratio).sum(-1);
}

double temperature_scale(const KdOptions& options) {
  if (!options.scale_by_temperature) return 1.0;
  const double t = options.temperature;
  return options.divergence == KdDivergence::TotalVariation ? t : t * t;
}

void check_student(const at::Tensor& student) {
  if (!student.defined() || student.dim() != 3)
    throw Error("distillation: student logits must be [B, T, V], got " +
                (student.defined() ? shape_of(student) : std::string("an undefined tensor")));
  if (!at::isFloatingType(student.scalar_type()))
    throw Error("distillation: student logits must be floating point");
}

// The scored positions of a [B, T] mask, as indices into the flattened B * T positions.
struct Scored {
  at::Tensor index;  // int64 [N] on the student's device; undefined when every position is scored
  int64_t count = 0;
};

Scored scored_positions(const at::Tensor& mask, int64_t batch, int64_t time, const at::Device& device) {
  Scored scored;
  if (!mask.defined()) {
    scored.count = batch * time;
    return scored;
  }
  if (mask.dim() != 2 || mask.size(0) != batch || mask.size(1) != time)
    throw Error("distillation: mask must be [B, T] = [" + std::to_string(batch) + ", " + std::to_string(time) +
                "] like the logits, got " + shape_of(mask));
  const at::Tensor flat = mask.reshape({-1});
  scored.index = (flat.scalar_type() == at::kBool ? flat : flat != 0).nonzero().squeeze(1).to(device);
  scored.count = scored.index.size(0);
  return scored;
}

// Rows [B, T, ...] -> [N, ...] of the scored positions.
at::Tensor select_rows(const at::Tensor& x, const Scored& scored) {
  std::vector<int64_t> shape = {x.size(0) * x.size(1)};
  for (int64_t d = 2; d < x.dim(); ++d) shape.push_back(x.size(d));
  const at::Tensor flat = x.reshape(shape);
  return scored.index.defined() ? flat.index_select(0, scored.index) : flat;
}

void check_integer_range(const at::Tensor& values, int64_t limit, const std::string& what) {
  if (values.numel() == 0) return;
  const int64_t low = values.min().item<int64_t>(), high = values.max().item<int64_t>();
  if (low < 0 || high >= limit)
    throw Error("distillation: " + what + " " + std::to_string(low < 0 ? low : high) +
                " at a scored position is outside the vocabulary [0, " + std::to_string(limit) + ")");
}

// Everything after the two distributions are known: divergence, scale, token mean, CE, mix.
// student_rows: the scored student logits [N, V] in the compute dtype; student_logprobs their
// log_softmax at the temperature; divergence_student/_teacher: what the divergence compares (the
// vocabulary, or the top-k buckets).
KdLossResult finish(const at::Tensor& student_rows, const at::Tensor& student_logprobs,
                    const at::Tensor& divergence_student, const at::Tensor& divergence_teacher, const Scored& scored,
                    const at::Tensor& labels, int64_t batch, int64_t time, const KdOptions& options) {
  KdLossResult result;
  result.tokens = scored.count;
  const double denominator = static_cast<double>(std::max<int64_t>(scored.count, 1));
  const at::Tensor divergence = kd_divergence(divergence_student, divergence_teacher, options);
  result.kd = divergence.sum() * (temperature_scale(options) / denominator);
  if (options.ce_weight == 0) {
    result.loss = result.kd;
    return result;
  }
  if (!labels.defined()) throw Error("distillation: ce_weight > 0 needs labels [B, T]");
  if (labels.dim() != 2 || labels.size(0) != batch || labels.size(1) != time)
    throw Error("distillation: labels must be [B, T] = [" + std::to_string(batch) + ", " + std::to_string(time) +
                "] like the logits, got " + shape_of(labels));
  if (!at::isIntegralType(labels.scalar_type(), /*includeBool=*/false))
    throw Error("distillation: labels must be integer token ids");
  const at::Tensor ids = select_rows(labels.to(student_rows.device()), scored).to(at::kLong);
  const int64_t vocab = student_rows.size(1);
  check_integer_range(ids, vocab, "label");
  // The hard-label term is untempered (Hinton et al.): reuse the log-probabilities only at T = 1.
  const at::Tensor logprobs = options.temperature == 1.0 ? student_logprobs : at::log_softmax(student_rows, -1);
  result.ce = -logprobs.gather(1, ids.unsqueeze(1)).sum() / denominator;
  const double w = options.ce_weight;
  result.loss = w == 1 ? result.ce : result.ce * w + result.kd * (1 - w);
  return result;
}

}  // namespace

KdDivergence parse_kd_divergence(const std::string& name) {
  if (name == "fkl") return KdDivergence::ForwardKl;
  if (name == "rkl") return KdDivergence::ReverseKl;
  if (name == "jsd") return KdDivergence::GeneralizedJsd;
  if (name == "tvd") return KdDivergence::TotalVariation;
  if (name == "skl" || name == "sfkl") return KdDivergence::SkewKl;
  if (name == "srkl") return KdDivergence::SkewReverseKl;
  throw Error("unknown distillation loss '" + name + "' (expected fkl, rkl, jsd, tvd, skl or srkl)");
}

const char* kd_divergence_name(KdDivergence divergence) {
  switch (divergence) {
    case KdDivergence::ForwardKl: return "fkl";
    case KdDivergence::ReverseKl: return "rkl";
    case KdDivergence::GeneralizedJsd: return "jsd";
    case KdDivergence::TotalVariation: return "tvd";
    case KdDivergence::SkewKl: return "skl";
    case KdDivergence::SkewReverseKl: return "srkl";
  }
  return "?";
}

void check_kd_options(const KdOptions& options) {
  auto in_unit = [](double x) { return x >= 0 && x <= 1; };  // false for NaN too
  if (!(options.temperature > 0) || !std::isfinite(options.temperature))
    throw Error("distillation: temperature must be a positive number, got " + std::to_string(options.temperature));
  if (!in_unit(options.beta)) throw Error("distillation: beta must be in [0, 1], got " + std::to_string(options.beta));
  if (!in_unit(options.skew_alpha))
    throw Error("distillation: skew_alpha must be in [0, 1], got " + std::to_string(options.skew_alpha));
  if (!in_unit(options.ce_weight))
    throw Error("distillation: ce_weight must be in [0, 1], got " + std::to_string(options.ce_weight));
}

at::Tensor kd_divergence(const at::Tensor& student_logprobs, const at::Tensor& teacher_logprobs,
                         const KdOptions& options) {
  if (!student_logprobs.sizes().equals(teacher_logprobs.sizes()))
    throw Error("distillation: student log-probabilities " + shape_of(student_logprobs) + " and teacher's " +
                shape_of(teacher_logprobs) + " differ in shape");
  const at::Tensor& s = student_logprobs;
  const at::Tensor t = teacher_logprobs.detach();
  switch (options.divergence) {
    case KdDivergence::ForwardKl: return kl_rows(t, s);
    case KdDivergence::ReverseKl: return kl_rows(s, t);
    case KdDivergence::GeneralizedJsd: {
      // TRL's end points are the plain KLs (the limits of JSD/beta and JSD/(1-beta)), see the header.
      if (options.beta == 0) return kl_rows(t, s);
      if (options.beta == 1) return kl_rows(s, t);
      const at::Tensor mixture = log_mixture(t, s, options.beta);  // beta p_T + (1 - beta) p_S
      return kl_rows(t, mixture) * options.beta + kl_rows(s, mixture) * (1 - options.beta);
    }
    case KdDivergence::TotalVariation: return (at::exp(t) - at::exp(s)).abs().sum(-1) * 0.5;
    case KdDivergence::SkewKl: return kl_rows(t, log_mixture(t, s, options.skew_alpha));
    case KdDivergence::SkewReverseKl: return kl_rows(s, log_mixture(s, t, options.skew_alpha));
  }
  throw Error("distillation: unknown divergence");
}

KdLossResult kd_loss(const at::Tensor& student_logits, const at::Tensor& teacher, const at::Tensor& mask,
                     const at::Tensor& labels, const KdOptions& options) {
  check_kd_options(options);
  check_student(student_logits);
  if (!teacher.defined() || teacher.dim() != 3)
    throw Error("distillation: teacher logits must be [B, T, V], got " +
                (teacher.defined() ? shape_of(teacher) : std::string("an undefined tensor")));
  if (teacher.size(2) != student_logits.size(2))
    throw Error("distillation: vocabulary mismatch: student has " + std::to_string(student_logits.size(2)) +
                " entries, teacher " + std::to_string(teacher.size(2)));
  if (teacher.size(0) != student_logits.size(0) || teacher.size(1) != student_logits.size(1))
    throw Error("distillation: student logits " + shape_of(student_logits) + " and teacher logits " +
                shape_of(teacher) + " differ in shape");
  if (!at::isFloatingType(teacher.scalar_type())) throw Error("distillation: teacher logits must be floating point");
  if (teacher.device() != student_logits.device())
    throw Error("distillation: student logits on " + student_logits.device().str() + ", teacher on " +
                teacher.device().str());
  const int64_t batch = student_logits.size(0), time = student_logits.size(1);
  const Scored scored = scored_positions(mask, batch, time, student_logits.device());
  const at::ScalarType dtype = compute_dtype(student_logits);
  const at::Tensor s = select_rows(student_logits, scored).to(dtype);
  const at::Tensor t = select_rows(teacher.detach(), scored).to(dtype);
  const at::Tensor s_logprobs = at::log_softmax(s / options.temperature, -1);
  const at::Tensor t_logprobs = at::log_softmax(t / options.temperature, -1);
  return finish(s, s_logprobs, s_logprobs, t_logprobs, scored, labels, batch, time, options);
}

TopKTeacher make_topk_teacher(const at::Tensor& teacher_logits, int64_t k, double temperature) {
  if (!teacher_logits.defined() || teacher_logits.dim() != 3)
    throw Error("distillation: teacher logits must be [B, T, V], got " +
                (teacher_logits.defined() ? shape_of(teacher_logits) : std::string("an undefined tensor")));
  const int64_t vocab = teacher_logits.size(2);
  if (k < 1 || k > vocab)
    throw Error("distillation: top-k cache needs 1 <= k <= V = " + std::to_string(vocab) + ", got k = " +
                std::to_string(k));
  if (!(temperature > 0) || !std::isfinite(temperature))
    throw Error("distillation: temperature must be a positive number, got " + std::to_string(temperature));
  at::NoGradGuard no_grad;
  const at::Tensor logprobs = at::log_softmax(teacher_logits.to(compute_dtype(teacher_logits)) / temperature, -1);
  const auto top = logprobs.topk(k, -1);
  TopKTeacher cache;
  cache.logprobs = std::get<0>(top);
  cache.ids = std::get<1>(top);
  cache.log_tail = safe_logsumexp(logprobs.scatter(-1, cache.ids, kNegInf), -1);
  cache.temperature = temperature;
  cache.vocab_size = vocab;
  return cache;
}

KdLossResult kd_loss_topk(const at::Tensor& student_logits, const TopKTeacher& teacher, const at::Tensor& mask,
                          const at::Tensor& labels, const KdOptions& options) {
  check_kd_options(options);
  check_student(student_logits);
  const int64_t batch = student_logits.size(0), time = student_logits.size(1), vocab = student_logits.size(2);
  if (teacher.vocab_size != vocab)
    throw Error("distillation: vocabulary mismatch: student has " + std::to_string(vocab) +
                " entries, the cached teacher " + std::to_string(teacher.vocab_size));
  if (std::abs(teacher.temperature - options.temperature) > 1e-12 * options.temperature)
    throw Error("distillation: the top-k cache was made at temperature " + std::to_string(teacher.temperature) +
                ", the loss uses " + std::to_string(options.temperature) +
                " (a cache cannot be re-tempered: its tail has no per-token probabilities)");
  const at::Tensor& lp = teacher.logprobs;
  if (!lp.defined() || !teacher.ids.defined() || !teacher.log_tail.defined())
    throw Error("distillation: top-k cache is incomplete (logprobs, ids and log_tail are all needed)");
  if (lp.dim() != 3 || lp.size(0) != batch || lp.size(1) != time || lp.size(2) < 1 || lp.size(2) > vocab)
    throw Error("distillation: top-k log-probabilities must be [B, T, K] = [" + std::to_string(batch) + ", " +
                std::to_string(time) + ", K] with 1 <= K <= " + std::to_string(vocab) + ", got " + shape_of(lp));
  const int64_t k = lp.size(2);
  if (!teacher.ids.sizes().equals(lp.sizes()))
    throw Error("distillation: top-k ids " + shape_of(teacher.ids) + " and log-probabilities " + shape_of(lp) +
                " differ in shape");
  if (teacher.log_tail.dim() != 2 || teacher.log_tail.size(0) != batch || teacher.log_tail.size(1) != time)
    throw Error("distillation: top-k log_tail must be [B, T] = [" + std::to_string(batch) + ", " +
                std::to_string(time) + "], got " + shape_of(teacher.log_tail));
  if (!at::isIntegralType(teacher.ids.scalar_type(), /*includeBool=*/false))
    throw Error("distillation: top-k ids must be integer token ids");
  const at::Device device = student_logits.device();
  if (lp.device() != device || teacher.ids.device() != device || teacher.log_tail.device() != device)
    throw Error("distillation: student logits on " + device.str() + ", the top-k cache on " + lp.device().str());

  const Scored scored = scored_positions(mask, batch, time, device);
  const at::ScalarType dtype = compute_dtype(student_logits);
  const at::Tensor s = select_rows(student_logits, scored).to(dtype);
  const at::Tensor ids = select_rows(teacher.ids, scored).to(at::kLong);
  check_integer_range(ids, vocab, "top-k id");
  if (scored.count > 0) {
    // Each id once per position; a repeated id would count its probability twice.
    const at::Tensor seen = at::zeros({scored.count, vocab}, s.options().dtype(at::kByte)).scatter_(1, ids, 1);
    if ((seen.sum(1) != k).any().item<bool>())
      throw Error("distillation: top-k ids repeat within a position (each id may appear once)");
  }
  const at::Tensor t_buckets =
      at::log_softmax(at::cat({select_rows(lp.detach(), scored).to(dtype),
                               select_rows(teacher.log_tail.detach(), scored).to(dtype).unsqueeze(1)},
                              1),
                      -1);
  const at::Tensor s_logprobs = at::log_softmax(s / options.temperature, -1);
  const at::Tensor s_tail = safe_logsumexp(s_logprobs.scatter(1, ids, kNegInf), 1);
  const at::Tensor s_buckets = at::cat({s_logprobs.gather(1, ids), s_tail.unsqueeze(1)}, 1);
  return finish(s, s_logprobs, s_buckets, t_buckets, scored, labels, batch, time, options);
}

// ---- hidden states -----------------------------------------------------------------------------------

at::Tensor make_hidden_projection(int64_t d_teacher, int64_t d_student, at::TensorOptions options,
                                  c10::optional<at::Generator> generator) {
  if (d_teacher < 1 || d_student < 1)
    throw Error("distillation: projection widths must be positive, got [" + std::to_string(d_teacher) + ", " +
                std::to_string(d_student) + "]");
  const double bound = 1.0 / std::sqrt(static_cast<double>(d_student));
  at::Tensor weight = at::empty({d_teacher, d_student}, options);
  {
    at::NoGradGuard no_grad;
    weight.uniform_(-bound, bound, generator);
  }
  return weight.set_requires_grad(true);
}

at::Tensor hidden_state_loss(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& mask,
                             HiddenLoss kind, const at::Tensor& projection) {
  if (!student.defined() || !teacher.defined() || student.dim() != 3 || teacher.dim() != 3)
    throw Error("distillation: hidden states must be [B, T, d], got student " +
                (student.defined() ? shape_of(student) : "undefined") + ", teacher " +
                (teacher.defined() ? shape_of(teacher) : "undefined"));
  if (student.size(0) != teacher.size(0) || student.size(1) != teacher.size(1))
    throw Error("distillation: student hidden states " + shape_of(student) + " and teacher's " + shape_of(teacher) +
                " differ in batch or sequence length");
  const int64_t d_student = student.size(2), d_teacher = teacher.size(2);
  if (projection.defined()) {
    if (projection.dim() != 2 || projection.size(0) != d_teacher || projection.size(1) != d_student)
      throw Error("distillation: hidden projection must be [d_teacher, d_student] = [" + std::to_string(d_teacher) +
                  ", " + std::to_string(d_student) + "], got " + shape_of(projection));
  } else if (d_student != d_teacher) {
    throw Error("distillation: hidden widths differ (student " + std::to_string(d_student) + ", teacher " +
                std::to_string(d_teacher) + "): pass a [" + std::to_string(d_teacher) + ", " +
                std::to_string(d_student) + "] projection (make_hidden_projection)");
  }
  if (teacher.device() != student.device())
    throw Error("distillation: student hidden states on " + student.device().str() + ", teacher's on " +
                teacher.device().str());
  const Scored scored = scored_positions(mask, student.size(0), student.size(1), student.device());
  const at::ScalarType dtype = compute_dtype(student);
  at::Tensor s = select_rows(student, scored).to(dtype);
  const at::Tensor t = select_rows(teacher.detach(), scored).to(dtype);
  if (projection.defined()) s = at::matmul(s, projection.to(dtype).t());
  const at::Tensor per_token =
      kind == HiddenLoss::Mse ? (s - t).pow(2).mean(-1) : 1 - at::cosine_similarity(s, t, /*dim=*/1, /*eps=*/1e-8);
  return per_token.sum() / static_cast<double>(std::max<int64_t>(scored.count, 1));
}

at::Tensor hidden_state_loss(const std::vector<at::Tensor>& student_layers,
                             const std::vector<at::Tensor>& teacher_layers,
                             const std::vector<std::pair<int64_t, int64_t>>& pairs, const at::Tensor& mask,
                             HiddenLoss kind, const std::vector<at::Tensor>& projections) {
  if (pairs.empty()) throw Error("distillation: no layer pairs for the hidden-state loss");
  if (projections.size() > 1 && projections.size() != pairs.size())
    throw Error("distillation: " + std::to_string(projections.size()) + " hidden projections for " +
                std::to_string(pairs.size()) + " layer pairs (give none, one shared, or one per pair)");
  at::Tensor total;
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto [s, t] = pairs[i];
    if (s < 0 || s >= static_cast<int64_t>(student_layers.size()) || t < 0 ||
        t >= static_cast<int64_t>(teacher_layers.size()))
      throw Error("distillation: layer pair (" + std::to_string(s) + ", " + std::to_string(t) + ") is outside the " +
                  std::to_string(student_layers.size()) + " student and " + std::to_string(teacher_layers.size()) +
                  " teacher hidden states");
    const at::Tensor projection = projections.empty() ? at::Tensor() : projections[projections.size() == 1 ? 0 : i];
    const at::Tensor loss = hidden_state_loss(student_layers[s], teacher_layers[t], mask, kind, projection);
    total = total.defined() ? total + loss : loss;
  }
  return total / static_cast<double>(pairs.size());
}

std::vector<std::pair<int64_t, int64_t>> uniform_layer_pairs(int64_t n_student, int64_t n_teacher) {
  if (n_student < 1 || n_student > n_teacher)
    throw Error("distillation: uniform layer pairs need 1 <= student layers <= teacher layers, got " +
                std::to_string(n_student) + " and " + std::to_string(n_teacher));
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (int64_t i = 0; i < n_student; ++i)
    pairs.emplace_back(i, std::llround(static_cast<double>((i + 1) * n_teacher) / n_student) - 1);
  return pairs;
}

}  // namespace llmpress

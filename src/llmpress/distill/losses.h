#pragma once
// Knowledge-distillation losses: divergences between the teacher's and the student's next-token
// distributions, hard-label cross-entropy mixed in by a weight, and hidden-state losses between
// chosen layers. Pure functions of tensors, differentiable through libtorch autograd with respect to
// the student side (the teacher is detached); every step is in log space, so -inf logits (masked vocab
// entries) and zero probabilities give no NaN in the loss or its gradient.
//
// Distributions: p_T = softmax(z_T / T), p_S = softmax(z_S / T) over the vocabulary (last dim), with the
// same temperature T for both. The teacher may be given as logits or as log-probabilities (log_softmax
// is shift invariant, so both give the same p_T at every T).
//
// Divergences, per scored position (sums over the vocabulary v):
//   ForwardKl        KL(p_T || p_S) = sum p_T (log p_T - log p_S)
//   ReverseKl        KL(p_S || p_T)
//   GeneralizedJsd   TRL GKDTrainer.generalized_jsd_loss (GKD, Agarwal et al. 2024, eq. 1):
//                      M = beta p_T + (1 - beta) p_S, as log M = logsumexp(log p_T + log beta,
//                                                                    log p_S + log(1 - beta))
//                      JSD(beta) = beta KL(p_T || M) + (1 - beta) KL(p_S || M)
//                    with TRL's special cases beta == 0 -> KL(p_T || p_S) and beta == 1 -> KL(p_S || p_T).
//                    These are the limits of the *rescaled* divergence, not of JSD(beta) itself, which tends
//                    to 0 at both ends: JSD(beta) / beta -> KL(p_T || p_S) as beta -> 0, and
//                    JSD(beta) / (1 - beta) -> KL(p_S || p_T) as beta -> 1 (tested). So the loss jumps at the
//                    end points (JSD(1e-3) is about 1e-3 KL(p_T || p_S)); that is TRL's definition, kept.
//   TotalVariation   0.5 sum |p_T - p_S|, in [0, 1]; where p_T = p_S exactly, its gradient is the subgradient 0
//   SkewKl           DistiLLM (Ko et al. 2024) skewed_forward_kl: KL(p_T || a p_T + (1 - a) p_S), a = skew_alpha
//   SkewReverseKl    DistiLLM skewed_reverse_kl:                 KL(p_S || a p_S + (1 - a) p_T)
//                    (p = teacher, q = student in the paper's KL(p || a p + (1-a) q); a = 0.1 there by default.)
//                    Mixtures are formed in log space (logsumexp), never as log(sum of probabilities).
// DistiLLM's forward_kl and skewed_forward_kl are cross-entropies (-sum p_T log q); ours add the teacher's
// entropy back so that every divergence is 0 when teacher == student. Gradients are the same.
//
// Infinite values: a divergence is +inf only where it truly is (ForwardKl with p_T > 0 where the student's
// logit is -inf; ReverseKl the other way round). Entries that are -inf in both, or whose weighting
// probability is 0, contribute exactly 0 and get gradient 0. JSD with 0 < beta < 1, the skew KLs with
// skew_alpha > 0 and TVD are always finite. Every scored position needs at least one finite logit on each side.
//
// Temperature scale (scale_by_temperature, on by default): the divergence term is multiplied by
//   T^2 for the KL family (ForwardKl, ReverseKl, GeneralizedJsd, SkewKl, SkewReverseKl): Hinton et al. 2015.
//       Near agreement each is a multiple of chi^2(p_T, p_S) ~ |z_T - z_S|^2 / T^2, so its gradient with
//       respect to the logits shrinks like 1/T^2; T^2 keeps the KD term's gradient the same size at every T
//       and against the CE term.
//   T for TotalVariation: TVD is first order in the logit difference (~ |z_T - z_S| / T), so its gradient
//       shrinks like 1/T only.
// With scale_by_temperature = false the divergence is exactly TRL's / DistiLLM's at any T. At T = 1 the
// scale is 1 either way.
//
// Reduction: token average over the scored positions (mask [B, T], true = scored; padding and prompt
// tokens false): sum over scored positions / their number (0 scored positions: loss 0, with a gradient of
// zeros). Positions are pooled over the batch, as TRL's "batchmean" with labels and DistiLLM do.
//
// Mixing with hard labels:  loss = ce_weight * CE + (1 - ce_weight) * scale * KD
// where CE = -log softmax(z_S)[label] at temperature 1 (Hinton: the hard-label term is not tempered),
// token-averaged over the same mask; logits[b, t] is scored against labels[b, t] (the caller shifts).
// DistiLLM's kd_ratio is 1 - ce_weight. With ce_weight = 0 no labels are needed; with ce_weight = 1 the KD
// term is still computed (for logging) but does not enter the loss.
//
// Cached teacher (top-k): per position the teacher's k largest log-probabilities at temperature T, their
// vocabulary ids, and log of the remaining mass (the tail, 1 - sum of the k probabilities). Each loss is then
// computed on k + 1 buckets, the same on both sides: the k teacher ids, and one tail bucket holding the
// rest of the vocabulary (for the student: logsumexp of its log-probabilities outside the k ids). The
// teacher's buckets are renormalized (log_softmax over the k + 1 values) so that a cache stored in lower
// precision is still a distribution. With k = V the tail is empty on both sides (-inf, contributes 0) and
// the loss equals the full-teacher loss up to float rounding (tested). With k < V it is the divergence
// between the two coarse-grained distributions, a lower bound of the full one for every loss here (data
// processing inequality). The cache is made at the loss's temperature (the tail's individual
// probabilities are unknown, so a cache cannot be re-tempered): the loss refuses another temperature.
//
// Hidden states: per scored position, MSE = mean over the hidden dimension of (P h_S - h_T)^2, or
// cosine = 1 - cos(P h_S, h_T) (cos as torch.nn.functional.cosine_similarity, eps 1e-8), token-averaged;
// P is an optional trainable [d_teacher, d_student] matrix (P h_S = h_S P^T, as a torch Linear without
// bias), required when the widths differ. Gradients flow to h_S and P.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

namespace llmpress {

enum class KdDivergence { ForwardKl, ReverseKl, GeneralizedJsd, TotalVariation, SkewKl, SkewReverseKl };

// DistiLLM's --type names: "fkl", "rkl", "jsd", "tvd", "skl" (also "sfkl"), "srkl". Throws Error otherwise.
KdDivergence parse_kd_divergence(const std::string& name);
const char* kd_divergence_name(KdDivergence divergence);

struct KdOptions {
  KdDivergence divergence = KdDivergence::ForwardKl;
  double temperature = 1.0;          // T > 0, applied to teacher and student: log_softmax(z / T)
  bool scale_by_temperature = true;  // KD term times T^2 (KL family) or T (TotalVariation); see above
  double beta = 0.5;                 // GeneralizedJsd, in [0, 1]: TRL's beta (0: forward KL, 1: reverse KL)
  double skew_alpha = 0.1;           // SkewKl / SkewReverseKl, in [0, 1]: DistiLLM's skew_alpha
  double ce_weight = 0.0;            // in [0, 1]: loss = ce_weight * CE + (1 - ce_weight) * KD
};

// Throws Error naming the option for a value out of range.
void check_kd_options(const KdOptions& options);

struct KdLossResult {
  at::Tensor loss;     // scalar: ce_weight * ce + (1 - ce_weight) * kd; what to call backward() on
  at::Tensor kd;       // scalar: token mean of the divergence times its temperature scale
  at::Tensor ce;       // scalar: token mean hard-label cross-entropy; undefined when ce_weight == 0
  int64_t tokens = 0;  // scored positions
};

// student_logits [B, T, V] (any float dtype; computed in float32, or float64 for float64 input);
// teacher [B, T, V] logits or log-probabilities (detached); mask [B, T] (bool or 0/1; undefined = all
// scored); labels [B, T] integer ids in [0, V) at scored positions (any value elsewhere, e.g. -100),
// needed when ce_weight > 0. Throws Error for shape, vocabulary or device mismatches (naming both sizes)
// and out-of-range labels.
KdLossResult kd_loss(const at::Tensor& student_logits, const at::Tensor& teacher, const at::Tensor& mask,
                     const at::Tensor& labels, const KdOptions& options);

// The building block: per-row divergence between distributions given as log-probabilities over the
// last dim (rows of equal shape; -inf allowed). No temperature, no scale, no reduction.
at::Tensor kd_divergence(const at::Tensor& student_logprobs, const at::Tensor& teacher_logprobs,
                         const KdOptions& options);

struct TopKTeacher {
  at::Tensor logprobs;  // [B, T, K] float: log p_T of the K ids, at `temperature`, normalized over all V
  at::Tensor ids;       // [B, T, K] int64: their vocabulary ids, distinct within a position
  at::Tensor log_tail;  // [B, T] float: log(1 - sum_k p_T), -inf when nothing remains (K = V)
  double temperature = 1.0;  // the temperature the log-probabilities are at
  int64_t vocab_size = 0;    // V of the teacher
};

// Builds the cache from full teacher logits [B, T, V]: the k most probable ids of log_softmax(z / T)
// (1 <= k <= V) and the exact tail (logsumexp of the rest, not 1 - sum, which cancels). Float32 output
// for float32 input (float64 for float64).
TopKTeacher make_topk_teacher(const at::Tensor& teacher_logits, int64_t k, double temperature);

// kd_loss with a cached teacher (tail bucket semantics above). teacher.temperature must equal
// options.temperature and teacher.vocab_size the student's V. Throws Error for ids outside [0, V) or
// repeated within a position.
KdLossResult kd_loss_topk(const at::Tensor& student_logits, const TopKTeacher& teacher, const at::Tensor& mask,
                          const at::Tensor& labels, const KdOptions& options);

// ---- hidden states -----------------------------------------------------------------------------------

enum class HiddenLoss { Mse, Cosine };

// A trainable projection [d_teacher, d_student] (requires_grad), initialized as torch.nn.Linear's weight
// (uniform in +-1/sqrt(d_student)); float32 unless told otherwise; from `generator` when given.
at::Tensor make_hidden_projection(int64_t d_teacher, int64_t d_student, at::TensorOptions options = at::kFloat,
                                  c10::optional<at::Generator> generator = c10::nullopt);

// student [B, T, d_s], teacher [B, T, d_t] (detached), mask [B, T] (undefined = all scored);
// projection [d_t, d_s] or undefined (then d_s must equal d_t). Token mean of the per-position loss.
at::Tensor hidden_state_loss(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& mask,
                             HiddenLoss kind, const at::Tensor& projection = {});

// Several layer pairs: the mean over `pairs` (student layer index, teacher layer index) of
// hidden_state_loss(student[s], teacher[t]). `projections` is empty (equal widths), one matrix shared by
// every pair, or one per pair.
at::Tensor hidden_state_loss(const std::vector<at::Tensor>& student_layers,
                             const std::vector<at::Tensor>& teacher_layers,
                             const std::vector<std::pair<int64_t, int64_t>>& pairs, const at::Tensor& mask,
                             HiddenLoss kind, const std::vector<at::Tensor>& projections = {});

// Student layer i paired with teacher layer round((i + 1) * n_teacher / n_student) - 1: evenly spaced, the
// last with the last (DistilBERT / TinyBERT's uniform mapping). Requires 1 <= n_student <= n_teacher.
std::vector<std::pair<int64_t, int64_t>> uniform_layer_pairs(int64_t n_student, int64_t n_teacher);

}  // namespace llmpress

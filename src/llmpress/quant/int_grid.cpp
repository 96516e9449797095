#include "llmpress/quant/int_grid.h"

#include "llmpress/core/error.h"
#include "llmpress/model/decoded_cache.h"

namespace llmpress {

void IntGridSpec::check() const {
  if (bits < 2 || bits > 8) throw Error("integer grid: --bits must be 2..8, got " + std::to_string(bits));
  if (group_size > 0 && group_size < 2) throw Error("integer grid: --group must be >= 2 (or -1 for per channel)");
}

std::string IntGridSpec::describe() const {
  return "int" + std::to_string(bits) + (symmetric ? " sym" : " asym") +
         (group_size > 0 ? " g" + std::to_string(group_size) : " per-channel");
}

GridParams fit_grid(const at::Tensor& w, const IntGridSpec& spec) {
  const at::Tensor x = w.to(at::kFloat);
  const double maxq = double(spec.max_code());
  // The range always includes 0, so that 0 is (nearly) representable.
  at::Tensor lo = at::clamp_max(std::get<0>(x.min(1, /*keepdim=*/true)), 0.0);
  at::Tensor hi = at::clamp_min(std::get<0>(x.max(1, /*keepdim=*/true)), 0.0);
  if (spec.symmetric) {
    // Always +-max|w|. (The reference keeps min = 0 for rows without negatives, which with the zero
    // fixed at 2^(bits-1) clips their positive half; we do not copy that.)
    hi = at::maximum(lo.abs(), hi);
    lo = -hi;
  }
  // An all-zero row gets the range [-1, 1] (any scale works; this one is the reference's).
  const at::Tensor empty = (lo == 0) & (hi == 0);
  lo = at::where(empty, at::full_like(lo, -1.0), lo);
  hi = at::where(empty, at::full_like(hi, 1.0), hi);
  at::Tensor scale = (hi - lo) / maxq;
  // Round to the stored dtype; keep it a positive normal number there (float16: >= 2^-14).
  const double smallest = spec.scale_dtype == at::kHalf ? 6.103515625e-05 : 1e-30;
  scale = at::clamp_min(scale, smallest).to(spec.scale_dtype).to(at::kFloat);
  at::Tensor zero = spec.symmetric ? at::full_like(scale, double(int64_t(1) << (spec.bits - 1)))
                                   : at::clamp(at::round(-lo / scale), 0.0, maxq);
  return {scale, zero};
}

at::Tensor grid_codes(const at::Tensor& w, const GridParams& params, const IntGridSpec& spec) {
  return at::clamp(at::round(w.to(at::kFloat) / params.scale) + params.zero, 0.0, double(spec.max_code()));
}

at::Tensor grid_values(const at::Tensor& codes, const at::Tensor& scale, const at::Tensor& zero) {
  return scale * (codes - zero);
}

QuantizedWeight::QuantizedWeight(at::Tensor codes, at::Tensor scales, at::Tensor zeros, at::Tensor g_idx,
                                 IntGridSpec spec, bool act_order)
    : codes_(std::move(codes)),
      scales_(std::move(scales)),
      zeros_(std::move(zeros)),
      g_idx_(std::move(g_idx)),
      spec_(spec),
      act_order_(act_order) {
  spec_.check();
  if (codes_.dim() != 2 || scales_.dim() != 2 || zeros_.sizes() != scales_.sizes() || g_idx_.dim() != 1 ||
      g_idx_.size(0) != codes_.size(1) || scales_.size(0) != codes_.size(0))
    throw Error("quantized weight: inconsistent shapes of codes, scales, zeros and g_idx");
  if (codes_.numel() > 0 && codes_.max().item<int64_t>() > spec_.max_code())
    throw Error("quantized weight: a code exceeds " + std::to_string(spec_.bits) + " bits");
  if (g_idx_.numel() > 0 && (g_idx_.min().item<int64_t>() < 0 || g_idx_.max().item<int64_t>() >= scales_.size(1)))
    throw Error("quantized weight: g_idx points past the groups");
}

at::Tensor QuantizedWeight::dense() const {
  const at::Tensor index = g_idx_.to(at::kLong);
  const at::Tensor scale = scales_.to(at::kFloat).index_select(1, index);
  const at::Tensor zero = zeros_.to(at::kFloat).index_select(1, index);
  return grid_values(codes_.to(at::kFloat), scale, zero);
}

at::Tensor QuantizedWeight::forward(const at::Tensor& x) const {
  // Dequantized on the fly (and cached within the budget): packed kernels belong to the runtimes we export to.
  return at::linear(x, DecodedCache::get(this, x.device(), x.scalar_type(), [this] { return dense(); }));
}

int64_t QuantizedWeight::storage_bits() const {
  int64_t bits = codes_.numel() * spec_.bits;
  bits += scales_.numel() * int64_t(scales_.element_size()) * 8;
  bits += zeros_.numel() * spec_.bits;
  if (act_order_) bits += g_idx_.numel() * 32;
  return bits;
}

QuantizedWeight::~QuantizedWeight() { DecodedCache::forget(this); }

WeightState QuantizedWeight::save() const {
  const nlohmann::json meta = {{"bits", spec_.bits}, {"symmetric", spec_.symmetric},
                               {"group_size", spec_.group_size}, {"act_order", act_order_}};
  return {"int", meta, {{"codes", codes_}, {"scales", scales_}, {"zeros", zeros_}, {"g_idx", g_idx_}}};
}

namespace {
const WeightKindRegistration int_kind("int", [](const WeightState& state) -> std::shared_ptr<LinearWeight> {
  IntGridSpec spec;
  spec.bits = state.meta.at("bits").get<int>();
  spec.symmetric = state.meta.at("symmetric").get<bool>();
  spec.group_size = state.meta.at("group_size").get<int64_t>();
  spec.scale_dtype = state.tensor("scales").scalar_type();
  return std::make_shared<QuantizedWeight>(state.tensor("codes"), state.tensor("scales"), state.tensor("zeros"),
                                           state.tensor("g_idx"), spec, state.meta.at("act_order").get<bool>());
});
}  // namespace

}  // namespace llmpress

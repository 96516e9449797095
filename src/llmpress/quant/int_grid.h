#pragma once
// Uniform integer grids of 2..8 bits (GPTQ/RTN style) and the quantized linear weight kind.
//
// A weight row is cut into groups of `group_size` input columns (or is one group: per output
// channel). Each (row, group) has a scale and an integer zero point, fitted by min/max as the GPTQ
// reference's Quantizer does: the range always contains 0; asymmetric: zero = round(-min/scale);
// symmetric: range +-max|w| and zero fixed at 2^(bits-1). Codes are clamp(round(w/scale) + zero,
// 0, 2^bits - 1) and the value is scale * (code - zero).
#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <string>

#include "llmpress/model/linear.h"

namespace llmpress {

struct IntGridSpec {
  int bits = 4;
  bool symmetric = false;
  int64_t group_size = 128;  // input columns per group; <= 0: one group per output row
  // Scales are rounded to this dtype when fitted, so that codes are chosen against the scale that
  // is actually stored (GPTQ checkpoints store float16 scales).
  at::ScalarType scale_dtype = at::kHalf;

  int64_t max_code() const { return (int64_t(1) << bits) - 1; }
  void check() const;  // throws for bits outside 2..8 or a bad group size
  std::string describe() const;  // "int4 asym g128"
};

// Scale and zero point per row for the columns fitted; both [rows, 1] float32 (zero is integral).
struct GridParams {
  at::Tensor scale, zero;
};

// Fits per-row parameters to the columns of w [rows, cols].
GridParams fit_grid(const at::Tensor& w, const IntGridSpec& spec);
// Integer codes (as float32 holding integers) of w under params.
at::Tensor grid_codes(const at::Tensor& w, const GridParams& params, const IntGridSpec& spec);
// scale * (codes - zero), the one dequantization formula everything uses (bit-identical results).
at::Tensor grid_values(const at::Tensor& codes, const at::Tensor& scale, const at::Tensor& zero);

// An [out, in] weight stored as integer codes with per-(row, group) scales and zeros.
// g_idx[j] is the group of input column j: j / group_size normally; with act-order the groups
// follow the permuted column order, so g_idx is an arbitrary map (the GPTQ format's g_idx).
class QuantizedWeight : public LinearWeight {
 public:
  // codes [out, in] uint8 in the original column order; scales [out, groups] (scale_dtype);
  // zeros [out, groups] uint8; g_idx [in] int32.
  QuantizedWeight(at::Tensor codes, at::Tensor scales, at::Tensor zeros, at::Tensor g_idx, IntGridSpec spec,
                  bool act_order);

  at::Tensor forward(const at::Tensor& x) const override;
  int64_t in_features() const override { return codes_.size(1); }
  int64_t out_features() const override { return codes_.size(0); }
  // codes at `bits` each, scales at their dtype, zeros at `bits` each, and g_idx (32 bits per
  // input column) only when act-order made it a real permutation: what a GPTQ checkpoint stores.
  int64_t storage_bits() const override;
  at::Tensor dense() const override;  // float32
  std::string kind() const override { return "int"; }

  const at::Tensor& codes() const { return codes_; }
  const at::Tensor& scales() const { return scales_; }
  const at::Tensor& zeros() const { return zeros_; }
  const at::Tensor& g_idx() const { return g_idx_; }
  const IntGridSpec& spec() const { return spec_; }
  bool act_order() const { return act_order_; }

  WeightState save() const override;
  ~QuantizedWeight() override;

 private:
  at::Tensor codes_, scales_, zeros_, g_idx_;
  IntGridSpec spec_;
  bool act_order_;
};

}  // namespace llmpress

#pragma once
// A quantized weight made trainable, for quantization-aware training and fine-tuning: a float32 latent
// matrix plus the format's quantization parameters held as continuous tensors. values() quantizes the
// latent with them by the format's own rules, with straight-through estimators for every rounding:
//   integer grid:  s = f16(scale), z = clamp(round(zero), 0, 2^b - 1)        [per (row, group)]
//                  code = clamp(round(w / s) + z, 0, 2^b - 1),  value = s * (code - z)
//   ggml block:    d = f16(d), sub-block scale k = clamp(round(k), range), e = d * k (legacy: e = d),
//                  offset o = f16(m) (Q4_1 / Q5_1) or -(f16(dmin) * clamp(round(m_j), range)) (k-quants),
//                  code = clamp(round((w - o) / e) + c0, range),  value = e * (code - c0) + o
// (the decoder's arithmetic in ggml_block_header.h). Rounding passes the gradient straight through;
// clamping stops it outside the range, so d value / d w is 1 inside and 0 outside, and the step size
// gets LSQ's gradient (code - c0) - (w - o) / e inside and (code - c0) outside.
//
// With fixed codes (PEQA, EfficientQAT's E2E-QP) the codes are the stored ones and only the parameters
// train: d value / d e = code - c0, d value / d o = 1. (LSQ's gradient would vanish there: a latent that
// sits on its grid gives (code - c0) - (w - o) / e = 0.)
//
// Every quantity the forward uses is an exactly stored value (f16 scales, integer sub-block scales and
// codes), so exported() holds exactly values(): its bytes decode to the training forward's weights.
#include <ATen/ATen.h>

#include <memory>
#include <string>

#include "llmpress/io/tensor_data.h"
#include "llmpress/model/linear.h"
#include "llmpress/model/transformer.h"
#include "llmpress/quant/int_grid.h"

namespace llmpress {

struct FakeQuantStart {
  bool fixed_codes = false;  // only the parameters train; the codes stay the stored ones
  // The latent to start from, [out, in] (EfficientQAT: the full-precision weights); undefined: the
  // dequantized matrix, so that values() starts exactly at the weight it was made from.
  at::Tensor latent;
};

class FakeQuantWeight : public LinearWeight {
 public:
  // Made from a QuantizedWeight (any grid, act-order too) or a GgmlWeight of a type with a block grid
  // (has_block_grid), with the stored parameters.
  static bool can_wrap(const LinearWeight& weight);
  static std::shared_ptr<FakeQuantWeight> wrap(const LinearWeight& quantized, const FakeQuantStart& start = {});

  // The quantized weight, differentiable with respect to the latent and the parameters; [out, in] float32.
  at::Tensor values() const;
  // The weight as its format stores it: a QuantizedWeight or a GgmlWeight whose decoding is values().
  std::shared_ptr<LinearWeight> exported() const;

  at::Tensor forward(const at::Tensor& x) const override;
  int64_t in_features() const override { return p_.latent.size(1); }
  int64_t out_features() const override { return p_.latent.size(0); }
  int64_t storage_bits() const override;
  at::Tensor dense() const override;
  std::string kind() const override { return "fake-quant"; }
  WeightState save() const override;
  // "" the latent matrix (not with fixed codes); "_qscale" the (super-)block or group scales; "_qsub_scale" the k-quant
  // sub-block scales; "_qzero" integer zero points; "_qmin" Q4_1 / Q5_1 mins or k-quant dmin;
  // "_qsub_min" k-quant sub-block mins.
  std::vector<TrainableTensor> trainable() const override;

  // A trained quantization parameter: `value` times a fixed `unit`, the value it started from, so that
  // one learning rate is the same relative step for a Q4_K super-block scale (~1e-3), its integer
  // sub-block scales (0..63) and an int2 group step (~1e-2). Without a unit the value trains as it is
  // (integer zero points, in code units, as EfficientQAT trains them).
  struct Learned {
    at::Tensor value, unit;
    bool defined() const { return value.defined(); }
    at::Tensor effective() const { return unit.defined() ? value * unit : value; }
    // value 1 and unit `initial`; an integer parameter that starts at 0 gets unit 1 (so it can move).
    static Learned relative_to(const at::Tensor& initial, bool integral);
  };

  // For restore: the members as saved.
  struct Parts {
    bool ggml = false;
    TensorType type = TensorType::Q4_0;     // ggml
    IntGridSpec grid;                       // integer grid
    bool act_order = false;
    at::Tensor latent, g_idx;
    at::Tensor codes;  // fixed codes [out, in] as float (undefined: codes from the latent)
    Learned scale, zero_or_min, sub_scale, sub_min;  // undefined where the format has none
  };
  explicit FakeQuantWeight(Parts parts);
  const Parts& parts() const { return p_; }

 private:
  at::Tensor grid_values() const;
  at::Tensor block_values() const;
  Parts p_;
};

// Replaces every linear weight of `model` that FakeQuantWeight can wrap by one (the others stay as they
// are; returns how many); and back: every FakeQuantWeight by its exported() weight.
int64_t wrap_fake_quant(Transformer& model, bool fixed_codes = false);
int64_t export_fake_quant(Transformer& model);
int64_t export_fake_quant(DecoderLayer& layer);  // its seven linear layers

}  // namespace llmpress

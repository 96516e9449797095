// Quantizing a pruned weight keeps its mask: GPTQ onto an integer grid gives the removed weights
// the zero code (exactly 0) and only moves the kept ones; format-aware GPTQ onto the symmetric
// ggml block types keeps exact zeros too, as read back by ggml's own decoders; the pruning mask
// and N:M pattern travel with the quantized weight.
#include <gtest/gtest.h>

#include "llmpress/model/sparse_weight.h"
#include "llmpress/prune/mask.h"
#include "llmpress/prune/sparsity_report.h"
#include "llmpress/quant/ggml_weight.h"
#include "llmpress/quant/gptq.h"
#include "llmpress/quant/gptq_ggml.h"
#include "llmpress/quant/rtn.h"

namespace llmpress {
namespace {

struct Problem {
  at::Tensor weight, removed, hessian;
};

// A 2:4-pruned [64, 256] weight and a strongly correlated positive definite Hessian (GPTQ's updates
// are then large enough to move unmasked zeros off 0 on an 8-bit grid).
Problem pruned_problem() {
  at::manual_seed(11);
  const at::Tensor w = at::randn({64, 256});
  const at::Tensor mask = nm_mask(w.abs(), 2, 4);  // true = removed
  const at::Tensor x = at::randn({2048, 256}, at::kDouble) + 2.0 * at::randn({2048, 1}, at::kDouble);
  return {w.masked_fill(mask, 0.0), mask, at::matmul(x.t(), x) / 2048.0};
}

double output_error(const at::Tensor& w, const at::Tensor& q, const at::Tensor& h) {
  const at::Tensor d = (w - q).to(at::kDouble);
  return (at::matmul(d, h) * d).sum().item<double>();
}

TEST(QuantizePruned, GptqOntoAGridKeepsEveryZeroAndBeatsRtn) {
  const Problem p = pruned_problem();
  for (bool act_order : {false, true}) {
    GptqOptions options;
    options.grid.bits = 4;
    options.grid.group_size = 64;
    options.act_order = act_order;
    const at::Tensor q = gptq_quantize(p.weight, p.hessian, options, "w", p.removed).weight->dense();
    EXPECT_TRUE((q.masked_select(p.removed) == 0).all().item<bool>()) << act_order;
    EXPECT_EQ(detect_nm_pattern(q), "2:4");
    // Without the mask GPTQ's updates fill the zeros in (visible on a fine grid).
    GptqOptions fine = options;
    fine.grid.bits = 8;
    const at::Tensor unmasked = gptq_quantize(p.weight, p.hessian, fine, "w").weight->dense();
    EXPECT_FALSE((unmasked.masked_select(p.removed) == 0).all().item<bool>());
    const at::Tensor masked = gptq_quantize(p.weight, p.hessian, fine, "w", p.removed).weight->dense();
    EXPECT_TRUE((masked.masked_select(p.removed) == 0).all().item<bool>());
    EXPECT_LT(output_error(p.weight, q, p.hessian), output_error(p.weight, rtn_quantize(p.weight, options.grid)->dense(),
                                                                  p.hessian));
  }
}

TEST(QuantizePruned, FormatAwareGptqKeepsExactZerosInTheSymmetricBlockTypes) {
  const Problem p = pruned_problem();
  GptqOptions options;
  for (TensorType type : {TensorType::Q4_0, TensorType::Q5_0, TensorType::Q8_0, TensorType::Q3_K, TensorType::Q6_K}) {
    const at::Tensor q = gptq_ggml_quantize(p.weight, p.hessian, type, options, "w", p.removed)->dense();
    EXPECT_TRUE((q.masked_select(p.removed) == 0).all().item<bool>()) << tensor_type_name(type);
    EXPECT_EQ(detect_nm_pattern(q), "2:4") << tensor_type_name(type);
  }
  // A block minimum puts 0 between two codes: the removed weights get the nearest one.
  const at::Tensor q4k = gptq_ggml_quantize(p.weight, p.hessian, TensorType::Q4_K, options, "w", p.removed)->dense();
  const at::Tensor step = (q4k.abs().max() / 15).expand_as(q4k);
  EXPECT_TRUE((q4k.masked_select(p.removed).abs() <= step.masked_select(p.removed)).all().item<bool>());
}

TEST(QuantizePruned, TheMaskTravelsWithTheQuantizedWeight) {
  const Problem p = pruned_problem();
  const auto pruned = std::make_shared<SparseWeight>(std::make_shared<DenseWeight>(p.weight), p.removed, 2, 4);
  InputStats stats;
  stats.hessian = p.hessian;
  stats.tokens = 2048;
  GptqOptions options;
  options.grid.group_size = 64;
  GptqCompressor gptq(options);
  const auto q = gptq.compress("w", Linear{pruned, {}}, stats);
  EXPECT_EQ(q->kind(), "sparse");
  EXPECT_EQ(q->pruning_mask().n, 2);
  EXPECT_TRUE(at::equal(q->pruning_mask().removed, p.removed));
  EXPECT_TRUE(dynamic_cast<const SparseWeight&>(*q).zeros_exact());
  RtnCompressor rtn(options.grid);
  EXPECT_TRUE(dynamic_cast<const SparseWeight&>(*rtn.compress("w", Linear{pruned, {}}, stats)).zeros_exact());
}

}  // namespace
}  // namespace llmpress

#pragma once
// Round to nearest: every weight to the nearest point of its group's min/max-fitted grid.
#include "llmpress/calib/compressor.h"
#include "llmpress/quant/int_grid.h"

namespace llmpress {

// weight [out, in] -> codes, scales and zeros (groups of consecutive columns).
std::shared_ptr<QuantizedWeight> rtn_quantize(const at::Tensor& weight, const IntGridSpec& spec);

class RtnCompressor : public Compressor {
 public:
  explicit RtnCompressor(IntGridSpec spec) : spec_(spec) { spec_.check(); }
  std::string describe() const override { return "rtn " + spec_.describe(); }
  StatsRequest needs() const override { return {}; }
  std::shared_ptr<LinearWeight> compress(const std::string& name, const Linear& linear,
                                         const InputStats& stats) override;

 private:
  IntGridSpec spec_;
};

}  // namespace llmpress

#pragma once
// What the calibration engine records about the input of a linear layer while calibration tokens
// flow through it. One Observer per statistic; the engine feeds each one every batch of inputs.
#include <ATen/ATen.h>

#include <cstdint>
#include <memory>

namespace llmpress {

class Communicator;

// Which statistics a compressor needs about each linear layer's input.
struct StatsRequest {
  bool hessian = false;       // X^T X / tokens (GPTQ, SparseGPT, SVD-LLM whitening)
  bool input_norms = false;   // per input channel sum of x^2 and mean |x| (Wanda, AWQ, ASVD)
  int64_t input_samples = 0;  // keep up to this many raw input rows (AWQ's grid search, ...); 0: none
  // Each batch's X^T X multiplied in float32 (twice as fast, as the GPTQ authors' code), then summed
  // in float64. For methods that only round against the Hessian (GPTQ); those that factor or whiten
  // it (SVD-LLM, ASVD) or test identities on it keep float64 products.
  bool hessian_float32_batches = false;

  StatsRequest merged(const StatsRequest& other) const {
    const bool mine = !hessian || hessian_float32_batches, theirs = !other.hessian || other.hessian_float32_batches;
    return {hessian || other.hessian, input_norms || other.input_norms,
            input_samples > other.input_samples ? input_samples : other.input_samples,
            (hessian || other.hessian) && mine && theirs};
  }
};

// The statistics of one linear layer's input over all calibration tokens. Layers that read the
// same input (q/k/v, gate/up) share one InputStats.
struct InputStats {
  int64_t tokens = 0;
  // [in, in] float64: mean over tokens of x x^T. float64 because the sum runs over every
  // calibration token (128 x 512 = 65k); in float32 the small late terms of such a sum lose most of
  // their digits and the Hessian drifts from positive definite. Compressors that are scale
  // invariant (GPTQ's relative dampening) do not care that this is the mean rather than the sum.
  at::Tensor hessian;
  at::Tensor sum_squares;  // [in] float64: sum over tokens of x_j^2 (||X_j||^2)
  at::Tensor mean_abs;     // [in] float64: mean over tokens of |x_j|
  at::Tensor samples;      // [k, in] float32: the first k input rows seen
};

class Observer {
 public:
  virtual ~Observer() = default;
  // x: [tokens, in] inputs of one batch, any float dtype, on the model's device.
  virtual void observe(const at::Tensor& x) = 0;
  // Data-parallel: combines what every rank observed (each saw its share of the samples), after the
  // last observe and before finish, so finish gives every rank the statistic of all the samples.
  virtual void reduce(const Communicator& group) = 0;
  // Writes the finished statistic into `stats`.
  virtual void finish(InputStats& stats) const = 0;
};

class HessianObserver : public Observer {
 public:
  explicit HessianObserver(bool float32_batches = false) : float32_batches_(float32_batches) {}
  void observe(const at::Tensor& x) override;
  void reduce(const Communicator& group) override;
  void finish(InputStats& stats) const override;

 private:
  bool float32_batches_;
  at::Tensor sum_;
  int64_t tokens_ = 0;
};

class InputNormObserver : public Observer {
 public:
  void observe(const at::Tensor& x) override;
  void reduce(const Communicator& group) override;
  void finish(InputStats& stats) const override;

 private:
  at::Tensor sum_squares_, sum_abs_;
  int64_t tokens_ = 0;
};

class InputSampleObserver : public Observer {
 public:
  explicit InputSampleObserver(int64_t max_rows) : max_rows_(max_rows) {}
  void observe(const at::Tensor& x) override;
  // The first max_rows rows of all ranks' in rank order: those one process would have kept.
  void reduce(const Communicator& group) override;
  void finish(InputStats& stats) const override;

 private:
  int64_t max_rows_;
  std::vector<at::Tensor> rows_;
  int64_t kept_ = 0;
};

}  // namespace llmpress

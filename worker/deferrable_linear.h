// DeferrableLinear: y = x W^T + b, whose backward can split in two for zero-bubble schedules.
// Normally its backward computes the input and weight gradients together, like torch::nn::Linear,
// but adds the weight and bias gradients into their .grad itself (one GEMM with accumulation).
// While a WeightGradStore is active (the executor's I action), it computes the input gradient
// only and defers the weight and bias gradients into the store; the executor's W action runs them,
// accumulating straight into the parameters' .grad.
#pragma once

#include <torch/torch.h>

namespace rondo {

class DeferrableLinearImpl : public torch::nn::Module {
 public:
  // `fused_kernels`: CPU float32 GEMMs on oneDNN's brgemm where it has one (worker/onednn_gemm.h),
  // the bias added inside the forward's GEMM; ATen's otherwise.
  DeferrableLinearImpl(int64_t in_features, int64_t out_features, bool bias = true,
                       bool fused_kernels = false);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight;  // [out, in]; initialised by the owner
  torch::Tensor bias;    // [out] or undefined

 private:
  bool fused_kernels_;
};
TORCH_MODULE(DeferrableLinear);

}  // namespace rondo

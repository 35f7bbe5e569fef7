// DeferrableLinear: y = x W^T + b, whose backward can split in two for zero-bubble schedules.
// With a LoRA adapter (add_lora): y = x W^T + b + scale (x A^T) B^T, the adapter's two products
// deferrable like the weight's. A frozen weight (requires_grad false) gets no gradient computed.
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
  // Registers lora_a [rank, in] and lora_b [out, rank] (initialised by the owner: B = 0 makes the
  // layer what it was) and scales their product by `scale` (alpha / rank).
  void add_lora(int64_t rank, double scale);
  // Computes with `matrix` ([out, in], another module's parameter: tied embeddings) instead of a
  // weight of its own, which it no longer registers.
  void share_weight(const torch::Tensor& matrix);

  torch::Tensor weight;          // [out, in]; initialised by the owner
  torch::Tensor bias;            // [out] or undefined
  torch::Tensor lora_a, lora_b;  // undefined without an adapter

 private:
  bool fused_kernels_;
  double lora_scale_ = 0;
};
TORCH_MODULE(DeferrableLinear);

}  // namespace rondo

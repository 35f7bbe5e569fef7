// The model's GELU and attention softmax on the fused kernels of worker/cpu_kernels.h, as autograd
// functions for CPU float32 tensors where this CPU has AVX2 or AVX-512; the model uses ATen's ops
// everywhere else (other devices and dtypes, CPUs without AVX2, or training.cpu_kernels aten).
// Both run on ATen's intra-op thread pool.
#pragma once

#include <torch/torch.h>

#include <string>

#include "proto/plan.pb.h"

namespace rondo {

// Whether the fused kernels run on `x` (CPU, float32, a CPU with AVX2 or AVX-512) when asked to.
bool fused_kernels_apply(const torch::Tensor& x, bool fused);

// torch::gelu(x) (the exact, erf form).
torch::Tensor gelu(const torch::Tensor& x, bool fused);

// Attention's probabilities softmax(scale * scores + bias) over the last dimension, in one pass
// forward and one backward (no scaled or masked copy of the scores). scores [B, t, keys]
// (fused_kernels_apply must hold); bias undefined, [t, keys] for every batch, or [n, t, keys]
// with n dividing B, batch i taking bias[i / (B / n)] (a mask per sample, shared by its heads).
// No gradient flows to the bias. scale > 0.
torch::Tensor attention_probabilities(const torch::Tensor& scores, const torch::Tensor& bias, double scale);

// What `setting` (training.cpu_kernels) runs on CPU float32 here, for runtime.json: "aten", or
// "fused (GELU/softmax: avx512; linear GEMMs: oneDNN brg:avx512_core)" and the like. PlanError
// when unspecified.
std::string describe_cpu_kernels(plan::CpuKernels setting);

}  // namespace rondo

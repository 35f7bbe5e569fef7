// The model's GELU and softmax: the fused kernels of worker/cpu_kernels.h as autograd functions for
// CPU float32 tensors where this CPU has AVX2 or AVX-512, ATen's ops everywhere else (other devices
// and dtypes, CPUs without AVX2, or `fused` false: training.cpu_kernels aten). Both run on ATen's
// intra-op thread pool.
#pragma once

#include <torch/torch.h>

#include <string>

#include "proto/plan.pb.h"

namespace rondo {

// torch::gelu(x) (the exact, erf form).
torch::Tensor gelu(const torch::Tensor& x, bool fused);
// torch::softmax(x, -1).
torch::Tensor softmax_last_dim(const torch::Tensor& x, bool fused);

// What `setting` (training.cpu_kernels) runs on CPU float32 here, for runtime.json: "fused
// (avx512)", "fused (avx2)", "aten", or "aten (no AVX2 on this CPU)". PlanError when unspecified.
std::string describe_cpu_kernels(plan::CpuKernels setting);

}  // namespace rondo

#include "worker/fused_ops.h"

#include <ATen/Parallel.h>

#include <algorithm>

#include "common/errors.h"
#include "worker/cpu_kernels.h"

namespace rondo {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kGrainElements = 16384;  // per task of the intra-op pool

bool fusable(const torch::Tensor& x, bool fused) {
  return fused && cpu_kernels::best_isa() != cpu_kernels::Isa::kScalar && x.device().is_cpu() &&
         x.scalar_type() == torch::kFloat32 && x.layout() == torch::kStrided && x.dim() > 0 && x.numel() > 0;
}

struct FusedGelu : torch::autograd::Function<FusedGelu> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input) {
    const auto x = input.contiguous();
    auto y = torch::empty_like(x);
    const float* xp = x.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    const auto isa = cpu_kernels::best_isa();
    at::parallel_for(0, x.numel(), kGrainElements, [&](int64_t begin, int64_t end) {
      cpu_kernels::gelu_forward(isa, xp + begin, yp + begin, end - begin);
    });
    // The output is saved too: the backward reads Phi(x) from it instead of recomputing erf. The
    // next layer keeps it for its own backward anyway, so this costs no memory.
    ctx->save_for_backward({x, y});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& y = saved[1];
    const auto dy = grads[0].contiguous();
    auto dx = torch::empty_like(x);
    const float *xp = x.data_ptr<float>(), *yp = y.data_ptr<float>(), *dyp = dy.data_ptr<float>();
    float* dxp = dx.data_ptr<float>();
    const auto isa = cpu_kernels::best_isa();
    at::parallel_for(0, x.numel(), kGrainElements, [&](int64_t begin, int64_t end) {
      cpu_kernels::gelu_backward(isa, xp + begin, yp + begin, dyp + begin, dxp + begin, end - begin);
    });
    return {dx};
  }
};

struct FusedSoftmax : torch::autograd::Function<FusedSoftmax> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input) {
    const auto x = input.contiguous();
    auto y = torch::empty_like(x);
    const int64_t cols = x.size(-1), rows = x.numel() / cols;
    const float* xp = x.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    const auto isa = cpu_kernels::best_isa();
    at::parallel_for(0, rows, std::max<int64_t>(1, kGrainElements / cols), [&](int64_t begin, int64_t end) {
      cpu_kernels::softmax_forward(isa, xp + begin * cols, yp + begin * cols, end - begin, cols);
    });
    ctx->save_for_backward({y});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto y = ctx->get_saved_variables()[0];
    const auto dy = grads[0].contiguous();
    auto dx = torch::empty_like(y);
    const int64_t cols = y.size(-1), rows = y.numel() / cols;
    const float *yp = y.data_ptr<float>(), *dyp = dy.data_ptr<float>();
    float* dxp = dx.data_ptr<float>();
    const auto isa = cpu_kernels::best_isa();
    at::parallel_for(0, rows, std::max<int64_t>(1, kGrainElements / cols), [&](int64_t begin, int64_t end) {
      cpu_kernels::softmax_backward(isa, yp + begin * cols, dyp + begin * cols, dxp + begin * cols,
                                    end - begin, cols);
    });
    return {dx};
  }
};

}  // namespace

torch::Tensor gelu(const torch::Tensor& x, bool fused) {
  return fusable(x, fused) ? FusedGelu::apply(x) : torch::gelu(x);
}

torch::Tensor softmax_last_dim(const torch::Tensor& x, bool fused) {
  return fusable(x, fused) ? FusedSoftmax::apply(x) : torch::softmax(x, -1);
}

std::string describe_cpu_kernels(plan::CpuKernels setting) {
  switch (setting) {
    case plan::CPU_KERNELS_FUSED:
      return cpu_kernels::best_isa() == cpu_kernels::Isa::kScalar
                 ? "aten (no AVX2 on this CPU)"
                 : std::string("fused (") + cpu_kernels::isa_name(cpu_kernels::best_isa()) + ")";
    case plan::CPU_KERNELS_ATEN:
      return "aten";
    default:
      throw PlanError("plan: training.cpu_kernels is unset or unknown (" + std::to_string(setting) +
                      "); rebuild the plan with this rondo");
  }
}

}  // namespace rondo

#include "worker/fused_ops.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "common/errors.h"
#include "worker/cpu_kernels.h"
#include "worker/onednn_gemm.h"

namespace rondo {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kGrainElements = 16384;  // per task of the intra-op pool

std::string shape_of(const torch::Tensor& t) { return c10::str(t.sizes()); }

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

// softmax(scale * scores + bias): batches of t rows, bias rows taken per batch (see the header);
// an empty bias for none.
struct FusedAttentionSoftmax : torch::autograd::Function<FusedAttentionSoftmax> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input, const torch::Tensor& bias_in,
                               double scale) {
    const auto x = input.contiguous();
    const int64_t batches = x.size(0), t = x.size(1), keys = x.size(2);
    torch::Tensor bias;
    int64_t batches_per_bias = batches;
    if (bias_in.numel() > 0) {
      bias = bias_in.dim() == 2 ? bias_in.unsqueeze(0).contiguous() : bias_in.contiguous();
      const int64_t n = bias.size(0);
      if (bias.dim() != 3 || n == 0 || batches % n != 0 || bias.size(1) != t || bias.size(2) != keys) {
        throw std::invalid_argument("attention_probabilities: bias " + shape_of(bias_in) +
                                    " does not fit scores " + shape_of(x));
      }
      batches_per_bias = batches / n;
    }
    auto y = torch::empty_like(x);
    const float* xp = x.data_ptr<float>();
    const float* bp = bias.defined() ? bias.data_ptr<float>() : nullptr;
    float* yp = y.data_ptr<float>();
    const auto isa = cpu_kernels::best_isa();
    const auto s = static_cast<float>(scale);
    const int64_t block = t * keys;
    at::parallel_for(0, batches, std::max<int64_t>(1, kGrainElements / block),
                     [&](int64_t begin, int64_t end) {
                       for (int64_t i = begin; i < end; ++i) {
                         cpu_kernels::softmax_forward(isa, xp + i * block,
                                                      bp ? bp + (i / batches_per_bias) * block : nullptr, s,
                                                      yp + i * block, t, keys);
                       }
                     });
    ctx->save_for_backward({y});
    ctx->saved_data["scale"] = scale;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto y = ctx->get_saved_variables()[0];
    const auto s = static_cast<float>(ctx->saved_data["scale"].toDouble());
    const auto dy = grads[0].contiguous();
    auto dx = torch::empty_like(y);
    const int64_t cols = y.size(-1), rows = y.numel() / cols;
    const float *yp = y.data_ptr<float>(), *dyp = dy.data_ptr<float>();
    float* dxp = dx.data_ptr<float>();
    const auto isa = cpu_kernels::best_isa();
    at::parallel_for(0, rows, std::max<int64_t>(1, kGrainElements / cols), [&](int64_t begin, int64_t end) {
      cpu_kernels::softmax_backward(isa, yp + begin * cols, dyp + begin * cols, s, dxp + begin * cols,
                                    end - begin, cols);
    });
    return {dx, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

bool fused_kernels_apply(const torch::Tensor& x, bool fused) {
  return fused && cpu_kernels::best_isa() != cpu_kernels::Isa::kScalar && x.device().is_cpu() &&
         x.scalar_type() == torch::kFloat32 && x.layout() == torch::kStrided && x.dim() > 0 && x.numel() > 0;
}

torch::Tensor gelu(const torch::Tensor& x, bool fused) {
  return fused_kernels_apply(x, fused) ? FusedGelu::apply(x) : torch::gelu(x);
}

torch::Tensor attention_probabilities(const torch::Tensor& scores, const torch::Tensor& bias, double scale) {
  if (!fused_kernels_apply(scores, true) || scores.dim() != 3 ||
      (bias.defined() && bias.scalar_type() != torch::kFloat32)) {
    throw std::invalid_argument("attention_probabilities: no fused kernel for scores " + shape_of(scores));
  }
  // Autograd takes no undefined input: an empty tensor stands for no bias.
  return FusedAttentionSoftmax::apply(scores, bias.defined() ? bias : torch::empty({0}), scale);
}

std::string describe_cpu_kernels(plan::CpuKernels setting) {
  switch (setting) {
    case plan::CPU_KERNELS_FUSED: {
      const auto isa = cpu_kernels::best_isa();
      // oneDNN's kernel for a linear layer's forward (it picks per shape; this one is typical).
      const std::string gemm = onednn::implementation({512, 512, 512, false, true, true, false});
      return std::string("fused (GELU/softmax: ") +
             (isa == cpu_kernels::Isa::kScalar ? "ATen's, no AVX2" : cpu_kernels::isa_name(isa)) +
             "; linear GEMMs: " +
             (gemm.empty() || isa == cpu_kernels::Isa::kScalar ? "ATen's" : "oneDNN " + gemm) + ")";
    }
    case plan::CPU_KERNELS_ATEN:
      return "aten";
    default:
      throw PlanError("plan: training.cpu_kernels is unset or unknown (" + std::to_string(setting) +
                      "); rebuild the plan with this rondo");
  }
}

}  // namespace rondo

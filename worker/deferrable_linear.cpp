#include "worker/deferrable_linear.h"

#include "pipeline/exec/weight_grad_store.h"
#include "worker/fused_ops.h"
#include "worker/onednn_gemm.h"

namespace rondo {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// c [m, n] = op(a) op(b) (+ bias) (+ c) on oneDNN's brgemm when `fused` and every operand is a
// dense CPU float32 tensor that oneDNN has a brgemm kernel for; false (nothing done) otherwise.
bool onednn_gemm(bool fused, onednn::Gemm g, const torch::Tensor& a, const torch::Tensor& b,
                 const torch::Tensor& bias, torch::Tensor& c) {
  g.with_bias = bias.defined();
  if (!fused || !fused_kernels_apply(a, true) || !fused_kernels_apply(b, true) || !a.is_contiguous() ||
      !b.is_contiguous() || (g.with_bias && (!fused_kernels_apply(bias, true) || !bias.is_contiguous())) ||
      (g.accumulate && (!fused_kernels_apply(c, true) || !c.is_contiguous())) || !onednn::fast(g)) {
    return false;
  }
  if (!g.accumulate) c = torch::empty({g.m, g.n});
  onednn::run(g, a.data_ptr<float>(), b.data_ptr<float>(), g.with_bias ? bias.data_ptr<float>() : nullptr,
              c.data_ptr<float>());
  return true;
}

// y = x W^T (+ b). Forward saves x and W, and the parameters themselves (not saved copies) for a
// deferred job to accumulate into their .grad; x only when the weight trains (the input gradient
// needs W alone). Autograd refuses an undefined tensor input, so the bias-free layer is its own
// Function.
torch::Tensor linear_forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                             const torch::Tensor& bias, bool fused) {
  ctx->save_for_backward({weight.requires_grad() ? x : torch::Tensor(), weight});
  ctx->saved_data["weight"] = weight;
  ctx->saved_data["bias"] = bias;
  ctx->saved_data["fused"] = fused;
  const int64_t out = weight.size(0), in = weight.size(1);
  torch::Tensor y;
  if (onednn_gemm(fused, {.m = x.numel() / in, .n = out, .k = in, .b_transposed = true}, x, weight, bias,
                  y)) {
    auto sizes = x.sizes().vec();
    sizes.back() = out;
    return y.view(sizes);
  }
  return torch::linear(x, weight, bias);
}

// The input gradient, returned; the weight's and bias's accumulated into their .grad now or, under
// an active WeightGradStore, when the store runs.
variable_list linear_backward(AutogradContext* ctx, const torch::Tensor& g) {
  const auto saved = ctx->get_saved_variables();
  const auto& x = saved[0];
  const auto& weight = saved[1];
  const int64_t out = weight.size(0), in = weight.size(1);
  const bool fused = ctx->saved_data["fused"].toBool();
  const auto g2 = g.reshape({-1, out});
  torch::Tensor grad_x;
  if (!ctx->needs_input_grad(0)) {
    // The stage's input, or below only frozen layers: nothing wants it.
  } else if (onednn_gemm(fused, {.m = g2.size(0), .n = in, .k = out}, g2, weight, {}, grad_x)) {
    auto sizes = g.sizes().vec();
    sizes.back() = in;
    grad_x = grad_x.view(sizes);
  } else {
    grad_x = g.matmul(weight);
  }
  // A frozen weight (LoRA's base) gets no gradient: neither GEMM nor buffer.
  if (!x.defined()) return {grad_x, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  const auto x2 = x.reshape({-1, in});
  // dW += g^T x and db += sum(g), straight into the parameters' gradient buffers (addmm_
  // accumulates inside the GEMM: no temporary, no separate pass). Returned undefined, so
  // autograd's accumulator adds nothing (its hooks still run, as the gradient is final).
  auto accumulate = [g2, x2, fused, weight = ctx->saved_data["weight"].toTensor(),
                     bias = ctx->saved_data["bias"].toTensor()]() mutable {
    torch::NoGradGuard no_grad;
    auto& wg = weight.mutable_grad();
    const onednn::Gemm dw{.m = weight.size(0),
                          .n = weight.size(1),
                          .k = g2.size(0),
                          .a_transposed = true,
                          .accumulate = wg.defined()};
    if (!onednn_gemm(fused, dw, g2, x2, {}, wg)) {
      if (wg.defined()) {
        wg.addmm_(g2.t(), x2);
      } else {
        wg = g2.t().mm(x2);
      }
    }
    if (!bias.defined()) return;
    auto& bg = bias.mutable_grad();
    if (bg.defined()) {
      bg.add_(g2.sum(0));
    } else {
      bg = g2.sum(0);
    }
  };
  if (auto* store = WeightGradStore::active()) {
    store->defer(std::move(accumulate));
  } else {
    accumulate();
  }
  return {grad_x, torch::Tensor(), torch::Tensor(), torch::Tensor()};
}

class LinearFunction : public torch::autograd::Function<LinearFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias, bool fused) {
    return linear_forward(ctx, x, weight, bias, fused);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return linear_backward(ctx, grads[0]);
  }
};

class LinearNoBiasFunction : public torch::autograd::Function<LinearNoBiasFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               bool fused) {
    return linear_forward(ctx, x, weight, torch::Tensor(), fused);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto out = linear_backward(ctx, grads[0]);
    out.pop_back();
    return out;
  }
};

}  // namespace

DeferrableLinearImpl::DeferrableLinearImpl(int64_t in_features, int64_t out_features, bool with_bias,
                                           bool fused_kernels)
    : fused_kernels_(fused_kernels) {
  weight = register_parameter("weight", torch::empty({out_features, in_features}));
  if (with_bias) bias = register_parameter("bias", torch::empty({out_features}));
}

void DeferrableLinearImpl::add_lora(int64_t rank, double scale) {
  lora_a = register_parameter("lora_a", torch::empty({rank, weight.size(1)}, weight.options()));
  lora_b = register_parameter("lora_b", torch::empty({weight.size(0), rank}, weight.options()));
  lora_scale_ = scale;
}

void DeferrableLinearImpl::share_weight(const torch::Tensor& matrix) {
  if (matrix.sizes() != weight.sizes())
    throw std::invalid_argument("a shared weight of another shape than the layer's");
  parameters_.erase("weight");
  weight = matrix;
}

torch::Tensor DeferrableLinearImpl::forward(const torch::Tensor& x) {
  auto y = bias.defined() ? LinearFunction::apply(x, weight, bias, fused_kernels_)
                          : LinearNoBiasFunction::apply(x, weight, fused_kernels_);
  if (!lora_a.defined()) return y;
  // Two deferrable products (a split backward defers both adapters' gradients to its W), the
  // scale applied to the narrow [tokens, rank] product.
  const auto down = LinearNoBiasFunction::apply(x, lora_a, fused_kernels_) * lora_scale_;
  return y + LinearNoBiasFunction::apply(down, lora_b, fused_kernels_);
}

}  // namespace rondo

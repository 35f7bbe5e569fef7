#include "worker/deferrable_linear.h"

#include "pipeline/exec/weight_grad_store.h"

namespace rondo {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// y = x W^T (+ b). Forward saves x and W, and the parameters themselves (not saved copies) for a
// deferred job to accumulate into their .grad. Autograd refuses an undefined tensor input, so the
// bias-free layer is its own Function.
torch::Tensor linear_forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                             const torch::Tensor& bias) {
  ctx->save_for_backward({x, weight});
  ctx->saved_data["weight"] = weight;
  ctx->saved_data["bias"] = bias;
  return torch::linear(x, weight, bias);
}

// The input gradient, returned; the weight's and bias's accumulated into their .grad now or, under
// an active WeightGradStore, when the store runs.
variable_list linear_backward(AutogradContext* ctx, const torch::Tensor& g) {
  const auto saved = ctx->get_saved_variables();
  const auto& x = saved[0];
  const auto& weight = saved[1];
  const int64_t out = weight.size(0), in = weight.size(1);
  const torch::Tensor grad_x = g.matmul(weight);
  const auto g2 = g.reshape({-1, out});
  const auto x2 = x.reshape({-1, in});
  // dW += g^T x and db += sum(g), straight into the parameters' gradient buffers (addmm_
  // accumulates inside the GEMM: no temporary, no separate pass). Returned undefined, so
  // autograd's accumulator adds nothing (its hooks still run, as the gradient is final).
  auto accumulate = [g2, x2, weight = ctx->saved_data["weight"].toTensor(),
                     bias = ctx->saved_data["bias"].toTensor()]() mutable {
    torch::NoGradGuard no_grad;
    auto& wg = weight.mutable_grad();
    if (wg.defined()) {
      wg.addmm_(g2.t(), x2);
    } else {
      wg = g2.t().mm(x2);
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
  return {grad_x, torch::Tensor(), torch::Tensor()};
}

class LinearFunction : public torch::autograd::Function<LinearFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias) {
    return linear_forward(ctx, x, weight, bias);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return linear_backward(ctx, grads[0]);
  }
};

class LinearNoBiasFunction : public torch::autograd::Function<LinearNoBiasFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight) {
    return linear_forward(ctx, x, weight, torch::Tensor());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto out = linear_backward(ctx, grads[0]);
    out.pop_back();
    return out;
  }
};

}  // namespace

DeferrableLinearImpl::DeferrableLinearImpl(int64_t in_features, int64_t out_features, bool with_bias) {
  weight = register_parameter("weight", torch::empty({out_features, in_features}));
  if (with_bias) bias = register_parameter("bias", torch::empty({out_features}));
}

torch::Tensor DeferrableLinearImpl::forward(const torch::Tensor& x) {
  return bias.defined() ? LinearFunction::apply(x, weight, bias) : LinearNoBiasFunction::apply(x, weight);
}

}  // namespace rondo

// worker/fused_ops.h: the fused GELU and softmax give ATen's values and gradients within float
// rounding, take the fused path where they should (and ATen's elsewhere), and a GPT trained on
// them computes the same loss and gradients as on ATen's kernels.
#include "worker/fused_ops.h"

#include <gtest/gtest.h>

#include <limits>
#include <string>

#include "tests/worker/loss_and_gradients.h"
#include "worker/cpu_kernels.h"
#include "worker/gpt_model.h"

namespace rondo {
namespace {

bool fused_here() { return cpu_kernels::best_isa() != cpu_kernels::Isa::kScalar; }

std::string node_name(const torch::Tensor& y) { return y.grad_fn() ? y.grad_fn()->name() : "none"; }

// Value and input gradient of `op` at x for the output gradient dy.
std::pair<torch::Tensor, torch::Tensor> value_and_gradient(const torch::Tensor& x, const torch::Tensor& dy,
                                                           torch::Tensor (*op)(const torch::Tensor&, bool),
                                                           bool fused, std::string* node = nullptr) {
  const auto leaf = x.detach().requires_grad_(true);
  const auto y = op(leaf, fused);
  if (node) *node = node_name(y);
  y.backward(dy);
  return {y.detach(), leaf.grad()};
}

TEST(FusedOps, GeluMatchesAten) {
  torch::manual_seed(1);
  const auto x = torch::randn({4, 128, 512}) * 3;
  const auto dy = torch::randn_like(x);
  std::string node;
  const auto [y, dx] = value_and_gradient(x, dy, gelu, true, &node);
  const auto [y_ref, dx_ref] = value_and_gradient(x, dy, gelu, false);
  if (fused_here()) {
    EXPECT_NE(node.find("FusedGelu"), std::string::npos) << node;
  }
  EXPECT_LT(((y - y_ref).abs() / x.abs().clamp_min(1)).max().item<double>(), 3e-7);
  EXPECT_LT(((dx - dx_ref).abs() / dy.abs().clamp_min(1)).max().item<double>(), 5e-7);
}

TEST(FusedOps, SoftmaxMatchesAtenOnMaskedScoresAndStridedInput) {
  torch::manual_seed(2);
  // Scores as attention makes them: [batch * heads, t, t] under a causal mask; transposed, so the
  // last dimension is strided and the op must copy it first.
  const int64_t t = 128;
  const auto mask = torch::full({t, t}, -std::numeric_limits<float>::infinity()).triu(1);
  const auto x = (torch::randn({16, t, t}) * 4 + mask).transpose(1, 2).contiguous().transpose(1, 2);
  ASSERT_FALSE(x.is_contiguous());
  const auto dy = torch::randn({16, t, t});
  std::string node;
  const auto [y, dx] = value_and_gradient(x, dy, softmax_last_dim, true, &node);
  const auto [y_ref, dx_ref] = value_and_gradient(x, dy, softmax_last_dim, false);
  if (fused_here()) {
    EXPECT_NE(node.find("FusedSoftmax"), std::string::npos) << node;
  }
  EXPECT_TRUE(torch::equal(y.masked_select(mask.isinf().expand_as(y)), torch::zeros({16 * t * (t - 1) / 2})));
  EXPECT_LT((y - y_ref).abs().max().item<double>(), 1e-6);
  EXPECT_LT((dx - dx_ref).abs().max().item<double>(), 1e-6 * dy.abs().max().item<double>());
}

TEST(FusedOps, OtherDtypesAndTheAtenSettingRunAten) {
  const auto x = torch::randn({8, 16}, torch::kFloat64);
  std::string node;
  value_and_gradient(x, torch::ones_like(x), gelu, true, &node);
  EXPECT_EQ(node.find("Fused"), std::string::npos) << node;
  value_and_gradient(x.to(torch::kFloat32), torch::ones({8, 16}), softmax_last_dim, false, &node);
  EXPECT_EQ(node.find("Fused"), std::string::npos) << node;
}

LossAndGradients gpt_loss_and_gradients(bool fused) {
  GptShape shape{2, 32, 4, 64, 256, 32};
  shape.fused_kernels = fused;
  GptModel model(shape, /*seed=*/7);
  torch::manual_seed(3);
  const auto tokens = torch::randint(0, 256, {4, 33}, torch::kLong);
  const auto loss = model->loss(model->forward_stage(0, tokens.slice(1, 0, 32)), tokens.slice(1, 1, 33));
  loss.backward();
  return {loss.item<double>(), gradients(model)};
}

TEST(FusedOps, GptLossAndGradientsMatchAtenKernels) {
  expect_close(gpt_loss_and_gradients(false), gpt_loss_and_gradients(true), "fused vs aten kernels");
}

}  // namespace
}  // namespace rondo

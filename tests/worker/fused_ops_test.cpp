// worker/fused_ops.h: the fused GELU and softmax give ATen's values and gradients within float
// rounding, take the fused path where they should (and ATen's elsewhere), and a GPT trained on
// them computes the same loss and gradients as on ATen's kernels.
#include "worker/fused_ops.h"
#include "worker/gpt_family.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "tests/worker/loss_and_gradients.h"
#include "worker/cpu_kernels.h"
#include "worker/staged_model.h"

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

// Probabilities and the scores' gradient from the fused op and from ATen's ops on the same inputs.
void expect_attention_probabilities_match(const torch::Tensor& scores, const torch::Tensor& bias,
                                          double scale, const std::string& what) {
  const auto dy = torch::randn(scores.sizes());
  const auto leaf = scores.detach().requires_grad_(true);
  const auto y = attention_probabilities(leaf, bias, scale);
  if (fused_here()) {
    EXPECT_NE(node_name(y).find("FusedAttentionSoftmax"), std::string::npos) << node_name(y);
  }
  y.backward(dy);
  const auto ref_leaf = scores.detach().requires_grad_(true);
  torch::Tensor full_bias = torch::zeros_like(scores);
  if (bias.defined()) {
    full_bias =
        bias.dim() == 2 ? bias.expand_as(scores) : bias.repeat_interleave(scores.size(0) / bias.size(0), 0);
  }
  const auto y_ref = torch::softmax(ref_leaf * scale + full_bias, -1);
  y_ref.backward(dy);
  EXPECT_TRUE(torch::equal(y.detach().masked_select(full_bias.isinf()),
                           torch::zeros({full_bias.isinf().sum().item<int64_t>()})))
      << what << ": masked entries are exactly 0";
  EXPECT_LT((y - y_ref).abs().max().item<double>(), 2e-6) << what;
  EXPECT_LT((leaf.grad() - ref_leaf.grad()).abs().max().item<double>(), 2e-6 * dy.abs().max().item<double>())
      << what;
}

TEST(FusedOps, AttentionProbabilitiesMatchAten) {
  if (!fused_here()) GTEST_SKIP() << "no AVX2 or AVX-512 on this CPU: the model runs ATen's softmax";
  torch::manual_seed(2);
  const int64_t heads = 4, b = 3, t = 32, keys = 48;
  const double scale = 1.0 / std::sqrt(16.0);
  const auto inf = std::numeric_limits<float>::infinity();
  const auto scores = torch::randn({b * heads, t, keys}) * 8;
  // A causal mask shared by every batch.
  const auto causal = torch::full({t, keys}, -inf).triu(keys - t + 1);
  expect_attention_probabilities_match(scores, causal, scale, "causal mask");
  // A mask per sample, shared by its heads (packed documents).
  auto per_sample = causal.unsqueeze(0).repeat({b, 1, 1});
  per_sample[1].slice(1, 0, 20).fill_(-inf);
  per_sample[1].slice(1, 0, 20).slice(0, 0, 4).fill_(0);
  expect_attention_probabilities_match(scores, per_sample, scale, "mask per sample");
  // No mask, and scores whose last dimension is strided (copied first).
  const auto strided = torch::randn({b * heads, keys, t}).transpose(1, 2);
  ASSERT_FALSE(strided.is_contiguous());
  expect_attention_probabilities_match(strided, {}, scale, "no mask, strided scores");
  EXPECT_THROW(attention_probabilities(scores, torch::zeros({5, t, keys}), scale), std::invalid_argument);
}

TEST(FusedOps, OtherDtypesAndTheAtenSettingRunAten) {
  EXPECT_FALSE(fused_kernels_apply(torch::randn({8, 16}, torch::kFloat64), true));
  EXPECT_FALSE(fused_kernels_apply(torch::randn({8, 16}), false));
  std::string node;
  const auto x = torch::randn({8, 16}, torch::kFloat64);
  value_and_gradient(x, torch::ones_like(x), gelu, true, &node);
  EXPECT_EQ(node.find("Fused"), std::string::npos) << node;
}

// One forward and backward of a small GPT: causal, or with packed documents (a mask per sample).
LossAndGradients gpt_loss_and_gradients(bool fused, bool packed) {
  ModelShape shape{2, 32, 4, 64, 256, 32};
  shape.fused_kernels = fused;
  StagedModel model(gpt_family(), shape, /*seed=*/7);
  torch::manual_seed(3);
  const auto tokens = torch::randint(0, 256, {4, 33}, torch::kLong);
  auto documents = torch::zeros({4, 32}, torch::kLong);
  documents.slice(1, 10, 32).fill_(1);
  documents[2].slice(0, 25, 32).fill_(2);
  const auto logits = model->forward_stage(0, tokens.slice(1, 0, 32), packed ? documents : torch::Tensor());
  const auto loss = model->loss(logits, tokens.slice(1, 1, 33));
  loss.backward();
  return {loss.item<double>(), gradients(model)};
}

TEST(FusedOps, GptLossAndGradientsMatchAtenKernels) {
  expect_close(gpt_loss_and_gradients(false, false), gpt_loss_and_gradients(true, false), "causal");
  expect_close(gpt_loss_and_gradients(false, true), gpt_loss_and_gradients(true, true), "packed documents");
}

}  // namespace
}  // namespace rondo

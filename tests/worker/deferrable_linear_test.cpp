// DeferrableLinear: without a WeightGradStore it matches torch::nn::functional::linear's gradients;
// under one (a split backward's I) the input gradient comes now, the weight and bias gradients
// not until the store runs (W), and then they equal the unsplit ones, accumulating across
// microbatches into existing gradients. All of it on ATen's GEMMs and on oneDNN's (fused kernels).
#include "worker/deferrable_linear.h"

#include <gtest/gtest.h>

#include "pipeline/exec/weight_grad_store.h"

namespace rondo {
namespace {

struct Grads {
  torch::Tensor x, w, b;
};

Grads reference(const torch::Tensor& x0, const torch::Tensor& w0, const torch::Tensor& b0,
                const torch::Tensor& g) {
  auto x = x0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true),
       b = b0.clone().requires_grad_(true);
  torch::nn::functional::linear(x, w, b).backward(g);
  return {x.grad(), w.grad(), b.grad()};
}

class DeferrableLinearOn : public ::testing::TestWithParam<bool> {};

TEST_P(DeferrableLinearOn, MatchesLinearWhenNotSplit) {
  torch::manual_seed(3);
  DeferrableLinear layer(6, 4, /*bias=*/true, /*fused_kernels=*/GetParam());
  layer->weight.data().normal_();
  layer->bias.data().normal_();
  auto x = torch::randn({2, 5, 6}, torch::requires_grad());
  auto g = torch::randn({2, 5, 4});
  layer->forward(x).backward(g);
  const auto ref = reference(x.detach(), layer->weight.detach(), layer->bias.detach(), g);
  EXPECT_TRUE(torch::allclose(x.grad(), ref.x, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(layer->weight.grad(), ref.w, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(layer->bias.grad(), ref.b, 1e-5, 1e-6));
}

TEST_P(DeferrableLinearOn, SplitBackwardDefersWeightGradientsUntilTheStoreRuns) {
  torch::manual_seed(4);
  DeferrableLinear layer(6, 4, /*bias=*/true, /*fused_kernels=*/GetParam());
  layer->weight.data().normal_();
  layer->bias.data().normal_();
  layer->weight.mutable_grad() = torch::zeros_like(layer->weight);
  layer->bias.mutable_grad() = torch::zeros_like(layer->bias);
  // Two microbatches: I of both, then W of both, as a zero-bubble schedule may order them.
  WeightGradStore stores[2];
  torch::Tensor xs[2], gs[2];
  for (int m = 0; m < 2; ++m) {
    xs[m] = torch::randn({3, 6}, torch::requires_grad());
    gs[m] = torch::randn({3, 4});
    WeightGradStore::Scope split(stores[m]);
    layer->forward(xs[m]).backward(gs[m]);
    EXPECT_FALSE(stores[m].empty());
  }
  EXPECT_EQ(layer->weight.grad().abs().sum().item<double>(), 0.0) << "weight gradient computed during I";
  EXPECT_EQ(layer->bias.grad().abs().sum().item<double>(), 0.0) << "bias gradient computed during I";
  for (auto& s : stores) s.run();
  Grads total{torch::Tensor(), torch::zeros({4, 6}), torch::zeros({4})};
  for (int m = 0; m < 2; ++m) {
    const auto ref = reference(xs[m].detach(), layer->weight.detach(), layer->bias.detach(), gs[m]);
    EXPECT_TRUE(torch::allclose(xs[m].grad(), ref.x, 1e-5, 1e-6)) << "input gradient of microbatch " << m;
    total.w += ref.w;
    total.b += ref.b;
  }
  EXPECT_TRUE(torch::allclose(layer->weight.grad(), total.w, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(layer->bias.grad(), total.b, 1e-5, 1e-6));
  EXPECT_TRUE(stores[0].empty() && stores[1].empty());
}

TEST_P(DeferrableLinearOn, WithoutBias) {
  DeferrableLinear layer(3, 2, /*bias=*/false, /*fused_kernels=*/GetParam());
  layer->weight.data().fill_(0.5);
  auto x = torch::ones({4, 3}, torch::requires_grad());
  layer->forward(x).sum().backward();
  EXPECT_FALSE(layer->bias.defined());
  EXPECT_TRUE(torch::allclose(layer->weight.grad(), torch::full({2, 3}, 4.0)));
}

INSTANTIATE_TEST_SUITE_P(Kernels, DeferrableLinearOn, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "OnednnGemms" : "AtenGemms"; });

}  // namespace
}  // namespace rondo

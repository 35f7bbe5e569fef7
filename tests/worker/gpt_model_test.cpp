// GptModel: selective recomputation changes what the forward keeps, not the numbers.
#include <gtest/gtest.h>

#include "worker/gpt_model.h"

namespace rondo {
namespace {

// Loss and every parameter's gradient of one forward and backward on fixed tokens.
std::pair<double, std::vector<torch::Tensor>> loss_and_gradients(bool selective) {
  GptShape shape{2, 32, 4, 64, 256, 16, selective};
  GptModel model(shape, /*seed=*/7);
  torch::manual_seed(3);
  const auto tokens = torch::randint(0, 256, {2, 17}, torch::kLong);
  const auto logits = model->forward_stage(0, tokens.slice(1, 0, 16));
  const auto loss = model->loss(logits, tokens.slice(1, 1, 17));
  loss.backward();
  std::vector<torch::Tensor> grads;
  for (const auto& p : model->parameters()) grads.push_back(p.grad().clone());
  return {loss.item<double>(), grads};
}

TEST(GptModel, SelectiveRecomputationGivesTheSameGradientsBitwise) {
  const auto plain = loss_and_gradients(false), selective = loss_and_gradients(true);
  EXPECT_EQ(plain.first, selective.first);
  ASSERT_EQ(plain.second.size(), selective.second.size());
  for (size_t i = 0; i < plain.second.size(); ++i) {
    EXPECT_TRUE(torch::equal(plain.second[i], selective.second[i])) << "parameter " << i;
  }
}

}  // namespace
}  // namespace rondo

// What the chunked-training tests compare against the unchunked model: the loss and every
// parameter's gradient, each gradient within 1e-5 of its own largest magnitude.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "worker/staged_model.h"

namespace rondo {

struct LossAndGradients {
  double loss = 0;
  std::vector<torch::Tensor> grads;  // in model->parameters() order
};

inline std::vector<torch::Tensor> gradients(const StagedModel& model) {
  std::vector<torch::Tensor> out;
  for (const auto& p : model->parameters()) out.push_back(p.grad().clone());
  return out;
}

inline void expect_close(const LossAndGradients& ref, const LossAndGradients& got, const std::string& what) {
  EXPECT_NEAR(got.loss, ref.loss, 1e-5 * std::abs(ref.loss)) << what;
  ASSERT_EQ(ref.grads.size(), got.grads.size());
  for (size_t i = 0; i < ref.grads.size(); ++i) {
    const double scale = ref.grads[i].abs().max().item<double>();
    ASSERT_GT(scale, 0.0) << what << ": parameter " << i << " has no gradient in the reference";
    const double diff = (got.grads[i] - ref.grads[i]).abs().max().item<double>();
    EXPECT_LE(diff, 1e-5 * scale) << what << ": parameter " << i;
  }
}

}  // namespace rondo

// The learning-rate schedule (worker/learning_rate.h) against the formulas written out: linear
// warm-up, then constant, linear or cosine decay to min_lr at train_iters.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "worker/learning_rate.h"

namespace rondo {
namespace {

plan::TrainingSpec spec(plan::LrDecayStyle style, int warmup) {
  plan::TrainingSpec t;
  t.set_lr(6e-4);
  t.set_min_lr(6e-5);
  t.set_lr_warmup_iters(static_cast<uint32_t>(warmup));
  t.set_train_iters(110);
  t.set_lr_decay_style(style);
  return t;
}

TEST(LearningRate, WarmUpThenConstantLinearOrCosine) {
  for (auto style :
       {plan::LR_DECAY_STYLE_CONSTANT, plan::LR_DECAY_STYLE_LINEAR, plan::LR_DECAY_STYLE_COSINE}) {
    const auto t = spec(style, 10);
    for (int step = 1; step <= 110; ++step) {
      double want;
      if (step <= 10) {
        want = 6e-4 * step / 10.0;
      } else {
        const double ratio = (step - 10) / 100.0;
        const double coeff = style == plan::LR_DECAY_STYLE_CONSTANT ? 1.0
                             : style == plan::LR_DECAY_STYLE_LINEAR
                                 ? 1.0 - ratio
                                 : 0.5 * (1.0 + std::cos(std::numbers::pi * ratio));
        want = style == plan::LR_DECAY_STYLE_CONSTANT ? 6e-4 : 6e-5 + coeff * (6e-4 - 6e-5);
      }
      EXPECT_NEAR(learning_rate(t, step), want, 1e-15) << "style " << style << " step " << step;
    }
  }
  // Landmarks: the peak right after warm-up, half way down the cosine at mid-decay, min_lr at the end.
  EXPECT_DOUBLE_EQ(learning_rate(spec(plan::LR_DECAY_STYLE_COSINE, 10), 10), 6e-4);
  EXPECT_NEAR(learning_rate(spec(plan::LR_DECAY_STYLE_COSINE, 10), 60), (6e-4 + 6e-5) / 2, 1e-15);
  EXPECT_NEAR(learning_rate(spec(plan::LR_DECAY_STYLE_LINEAR, 10), 110), 6e-5, 1e-15);
  // No warm-up: the first step already decays from the peak.
  EXPECT_LT(learning_rate(spec(plan::LR_DECAY_STYLE_LINEAR, 0), 1), 6e-4);
}

}  // namespace
}  // namespace rondo

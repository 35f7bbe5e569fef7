// The learning rate of optimizer step `step` (from 1), Megatron's schedule: a linear warm-up from
// 0 over training.lr_warmup_iters steps to training.lr, then constant, or decaying to
// training.min_lr at training.train_iters, linearly or along a half cosine.
#pragma once

#include <cstdint>

#include "proto/plan.pb.h"

namespace rondo {

double learning_rate(const plan::TrainingSpec& t, int64_t step);

}  // namespace rondo

// What a rank computes for one microbatch of a StepBatches: a stage's forward and the microbatch's
// loss, with data.pack's documents and, under context parallelism, this rank's share of each row.
// The training step (worker/trainer.cpp) and validation (worker/validation.h) compute alike.
#pragma once

#include <torch/torch.h>

#include "data/exec/step_batches.h"
#include "worker/staged_model.h"

namespace rondo {

// Stage `stage`'s forward of `input`: token ids [rows, seq] (whole rows: with `context`, this
// rank's share is taken here) or hidden states. `context` null: no context parallelism.
torch::Tensor microbatch_forward(StagedModel& model, StepBatches& batches, int microbatch, int stage,
                                 const torch::Tensor& input, const ContextParallel* context);

// The loss of the microbatch's logits against `targets` [rows, seq]: with data.pack a successor
// in another document is no target, with data.pad none outside the row's document. Context
// parallelism: this rank's share of the rows' targets over all of them, so that the group's
// partial losses add up.
torch::Tensor microbatch_loss(StagedModel& model, StepBatches& batches, int microbatch,
                              const torch::Tensor& logits, const torch::Tensor& targets,
                              const ContextParallel* context);

}  // namespace rondo

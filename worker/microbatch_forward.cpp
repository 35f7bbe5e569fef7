#include "worker/microbatch_forward.h"

#include <algorithm>

namespace rondo {

torch::Tensor microbatch_forward(StagedModel& model, StepBatches& batches, int microbatch, int stage,
                                 const torch::Tensor& input, const ContextParallel* context) {
  if (!context) return model->forward_stage(stage, input, batches.documents(microbatch));
  // Token ids arrive as whole rows: this rank's share of them (hidden states are shares already).
  const auto x = input.dim() == 2 ? input.index_select(1, context->held) : input;
  return model->forward_stage(stage, x, batches.documents(microbatch), context);
}

torch::Tensor microbatch_loss(StagedModel& model, StepBatches& batches, int microbatch,
                              const torch::Tensor& logits, const torch::Tensor& targets,
                              const ContextParallel* context) {
  const auto counted = batches.counted_targets(microbatch, targets);
  if (!context) return model->loss(logits, counted);
  const int64_t n = std::max<int64_t>(1, counted.ne(-100).sum().item<int64_t>());
  return model->loss(logits, counted.index_select(1, context->held), n);
}

}  // namespace rondo

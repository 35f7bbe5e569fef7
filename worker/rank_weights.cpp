#include "worker/rank_weights.h"

#include <stdexcept>

#include "common/errors.h"
#include "common/logging.h"
#include "proto/plan.pb.h"
#include "proto/plan_names.h"
#include "worker/bound_weights.h"
#include "worker/delayed_update.h"
#include "worker/stateless_weights.h"

namespace rondo {

int RankWeights::version(int64_t now) const { return delayed() ? DelayedUpdate::version(now) : 0; }

torch::Tensor RankWeights::stage_gradients(int stage) {
  throw std::logic_error("stage " + std::to_string(stage) +
                         "'s gradients: only stateless workers hand them to the executor");
}

void RankWeights::step_optimizer(torch::optim::Optimizer& optimizer, const torch::Tensor& grads, double lr,
                                 double norm) {
  if (const double clip = plan_.training().clip_grad(); clip > 0 && norm > clip)
    grads.mul_(clip / (norm + 1e-6));
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
  optimizer.step();
  grads.zero_();
}

ModelShape model_shape(const plan::Plan& plan, std::shared_ptr<MoeRuntime> moe) {
  const auto& m = plan.model();
  ModelShape shape{m.num_layers(),
                   m.hidden_size(),
                   m.num_attention_heads(),
                   m.ffn_hidden_size(),
                   m.vocab_size(),
                   m.seq_length(),
                   m.recompute_granularity() == plan::RECOMPUTE_SELECTIVE,
                   plan.training().cpu_kernels() == plan::CPU_KERNELS_FUSED};
  if (m.moe().num_experts() > 0) {
    shape.moe = {.hidden_size = m.hidden_size(),
                 .num_experts = m.moe().num_experts(),
                 .topk = m.moe().router_topk(),
                 .capacity_factor = m.moe().capacity_factor(),
                 .aux_loss_coeff = m.moe().aux_loss_coeff()};
    shape.moe_layer_freq = m.moe().layer_freq();
    shape.moe_runtime = std::move(moe);
  }
  shape.num_query_groups = m.num_query_groups();
  shape.head_size = m.kv_channels();
  shape.rotary = {.base = m.rotary_base(),
                  .scaling_factor = m.rope_scaling_factor(),
                  .low_freq_factor = m.rope_low_freq_factor(),
                  .high_freq_factor = m.rope_high_freq_factor(),
                  .original_max_positions = m.rope_original_max_positions()};
  shape.norm_epsilon = m.norm_epsilon();
  shape.tie_embeddings = m.tie_embeddings();
  const auto& t = plan.training();
  shape.lora = {.rank = t.lora_rank(),
                .alpha = t.lora_alpha(),
                .targets = {t.lora_target_modules().begin(), t.lora_target_modules().end()}};
  return shape;
}

DelayCorrection delay_correction(const plan::Plan& plan) {
  const auto correction = plan.delay_correction();
  if (correction == plan::DELAY_CORRECTION_UNSPECIFIED || name_of(correction).empty()) {
    throw PlanError("plan field delay_correction = " + std::to_string(correction) +
                    " is not one this worker runs (a plan from another rondo?)");
  }
  switch (correction) {
    case plan::DELAY_CORRECTION_ERROR_FEEDBACK:
      return DelayCorrection::kErrorFeedback;
    case plan::DELAY_CORRECTION_WEIGHT_PREDICTION:
      return DelayCorrection::kWeightPrediction;
    case plan::DELAY_CORRECTION_VELOCITY_PREDICTION:
      return DelayCorrection::kVelocityPrediction;
    default:
      return DelayCorrection::kNone;
  }
}

void log_asynchronous_mode(const plan::Plan& plan) {
  logging::get("worker")->info(
      "asynchronous pipeline (PipeDream-2BW): step t computes on the weights before step t-1's update; "
      "the update overlaps the next step (two weight versions, correction {})",
      name_of(plan.delay_correction()));
}

std::unique_ptr<RankWeights> make_rank_weights(const RankWeightsContext& context) {
  if (context.plan.stateless_workers()) return std::make_unique<StatelessWeights>(context);
  return std::make_unique<BoundWeights>(context);
}

}  // namespace rondo

// RankWeights: how a rank holds, computes on and updates its weights -- the part of a run's mode
// that the step loop and the executor's callbacks talk to, chosen once at setup by
// make_rank_weights():
//   BoundWeights (worker/bound_weights.h): the plan's stages of this rank, their gradients in one
//     flat buffer summed over the data-parallel group (GradientReduction); asynchronous plans add
//     two compute versions and the one-step delayed update (DelayedUpdate);
//   StatelessWeights (worker/stateless_weights.h): RoundPipe's stateless workers, the whole model
//     over node-shared weights, each worker updating the stages it owns (synchronously, or one
//     step late with both versions in node memory).
//
// Steps are numbered from 0 here (`now`: the step running). Call order per step: compute_model()
// for each microbatch, before_backward()/after_backward() around each backward,
// reduce_gradients() at the plan's ALLREDUCE; then either update() (synchronous) or, on the
// delayed update's thread, collect_delayed_gradients() and update_delayed().
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "worker/delayed_update.h"
#include "worker/model_family.h"
#include "worker/staged_model.h"

namespace rondo {

namespace plan {
class Plan;
}
class Collectives;
class Communicator;
class MetricsWriter;
class SharedReplicaState;
class TimingRecorder;

class RankWeights {
 public:
  virtual ~RankWeights() = default;

  // The optimizer's weights: what checkpoints save and load.
  virtual StagedModel& model() = 0;
  // What a checkpoint saves as the optimizer (with a weight delay: also both versions and the
  // correction's state).
  virtual torch::optim::Optimizer& checkpointed_optimizer() = 0;
  // Before the first step, after the checkpoint load if any (`loaded`: it replaced the parameters'
  // storage, and with it the gradient accumulators that reduction hooks attach to).
  virtual void before_first_step(bool loaded) = 0;
  // The model a microbatch of step `at` computes on while step `now` runs (an asynchronous stream
  // computes the next step's first microbatches ahead). May wait for the update in flight.
  virtual StagedModel& compute_model(int64_t at, int64_t now) = 0;
  // The one-step weight delay (plan.asynchronous), or null.
  virtual DelayedUpdate* delayed() const = 0;
  // The weight version step `now` computes on (two alternate with a delay; otherwise 0).
  int version(int64_t now) const;

  // Stateless workers' node-shared state, which the executor moves gradients and boundaries
  // through (null for ranks bound to their stages), and one stage's private gradients.
  virtual SharedReplicaState* shared_replica() { return nullptr; }
  virtual torch::Tensor stage_gradients(int stage);

  // The executor's backward hooks (overlapped gradient reduction).
  virtual void before_backward(int64_t /*now*/, int /*stage*/, bool /*last*/) {}
  virtual void after_backward(int64_t /*now*/, int /*stage*/, bool /*last*/) {}
  // After the step's last backward: its gradients summed over the data-parallel replicas (where
  // the delayed update takes them itself, nothing).
  virtual void reduce_gradients(int64_t now) = 0;
  // This rank's share of the step's squared gradient norm, summed over the world for clipping
  // (each gradient counted by one of its replicas; 0 on the others); nullopt where the delayed
  // update adds it (collect_delayed_gradients()).
  virtual std::optional<double> gradient_norm_squared(int64_t now) = 0;

  // Synchronous: the optimizer step at `lr`, the gradients clipped to training.clip_grad by the
  // world's `norm`.
  virtual void update(double lr, double norm) = 0;
  // Asynchronous, on the update's thread, for step `now` (counted from the run's first step,
  // `run_step`, as the node-shared state counts): the step's final gradients, which compute
  // versions no longer read; their squared norm when this rank adds it to the step's sums.
  virtual std::optional<double> collect_delayed_gradients(int64_t now, int64_t run_step) = 0;
  // Then the optimizer step from them.
  virtual void update_delayed(int64_t now, double lr, double norm) = 0;
  // Runs on the update's thread once the version it wrote is in place (or an empty function).
  virtual std::function<void()> on_version_written(int64_t /*run_step*/) { return {}; }
  // Before waiting for the update in flight of step `run_step` (stateless workers: their own
  // gradient additions first, which other owners' updates wait for).
  virtual void before_wait(int64_t /*run_step*/) {}

  // The parameters this rank holds, for the log; and the metrics fields this part adds.
  // Between steps: the data-parallel ring's new order (group indices) for the gradients' own
  // reductions; false when this mode cannot change it while running.
  virtual bool set_ring_order(const std::vector<int>& /*order*/) { return false; }
  virtual std::string describe() const = 0;
  virtual void add_metrics(MetricsWriter& /*metrics*/) {}

 protected:
  explicit RankWeights(const plan::Plan& plan) : plan_(plan) {}
  // Clipping by the world's `norm` and the optimizer's step at `lr` on `grads`, the optimizer's
  // gradients (summed over the data-parallel ranks), which are zeroed after.
  void step_optimizer(torch::optim::Optimizer& optimizer, const torch::Tensor& grads, double lr, double norm);

  const plan::Plan& plan_;
};

// What the weights of a run need from the trainer: the plan and this rank, the device, the
// world (the stateless replica is a split of it), the data-parallel group and the recorder.
struct RankWeightsContext {
  const plan::Plan& plan;
  int rank = 0;
  torch::Device device{torch::kCPU};
  Communicator& world;
  Collectives& dp;
  TimingRecorder* recorder = nullptr;
  // Mixture of experts: what the layers share (the expert group) and, with expert parallelism,
  // the group the experts' gradients are summed over (their replicas; null: `dp`).
  std::shared_ptr<MoeRuntime> moe = nullptr;
  Collectives* expert_dp = nullptr;
};

// The model's shape from the plan (model and training.cpu_kernels), its MoE layers sharing `moe`.
ModelShape model_shape(const plan::Plan& plan, std::shared_ptr<MoeRuntime> moe = nullptr);

// plan.delay_correction; throws PlanError for a value this worker does not run.
DelayCorrection delay_correction(const plan::Plan& plan);
// Rank 0's line about the asynchronous mode.
void log_asynchronous_mode(const plan::Plan& plan);

// The run's mode, chosen once: stateless workers (plan.stateless_workers) or ranks bound to the
// plan's stages; synchronous or one step delayed (plan.asynchronous).
std::unique_ptr<RankWeights> make_rank_weights(const RankWeightsContext& context);

}  // namespace rondo

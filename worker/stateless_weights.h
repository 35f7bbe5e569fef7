// StatelessWeights: the weights of RoundPipe's stateless workers (plan.stateless_workers). Each
// worker holds the whole model as atoms (pipeline/pipeline_schedule.h's model_atoms), its
// parameters viewing the replica's node-shared weights (SharedReplicaState), so any worker runs
// any stage's task in place. Backward stage k belongs to worker k mod p, which sums its
// gradients over the data-parallel replicas and updates it; the others' optimizer state is never
// touched here.
//   synchronous: the owner's optimizer steps the shared weights in place at the step's end;
//   asynchronous: the owner's optimizer steps a private copy of its stages (the newest weights)
//     on the delayed update's thread, from the step's sums taken off the node-shared gradients,
//     and writes the weights step t + 2 computes on into shared version t % 2.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pipeline/exec/shared_replica_state.h"
#include "worker/delayed_update.h"
#include "worker/rank_weights.h"

namespace rondo {

class StatelessWeights : public RankWeights {
 public:
  // Collective over the world (splits each pipeline replica) and then over the replica.
  explicit StatelessWeights(const RankWeightsContext& context);
  ~StatelessWeights() override;

  StagedModel& model() override { return model_; }
  torch::optim::Optimizer& checkpointed_optimizer() override;
  void before_first_step(bool loaded) override;
  StagedModel& compute_model(int64_t at, int64_t now) override;
  DelayedUpdate* delayed() const override { return delayed_.get(); }

  SharedReplicaState* shared_replica() override { return shared_.get(); }
  torch::Tensor stage_gradients(int stage) override;
  void reduce_gradients(int64_t now) override;
  std::optional<double> gradient_norm_squared(int64_t now) override;

  void update(double lr, double norm) override;
  std::optional<double> collect_delayed_gradients(int64_t now, int64_t run_step) override;
  void update_delayed(int64_t now, double lr, double norm) override;
  std::function<void()> on_version_written(int64_t run_step) override;
  void before_wait(int64_t run_step) override;

  std::string describe() const override;

 private:
  using Named = std::vector<std::pair<std::string, torch::Tensor>>;
  // The optimizer over the stages this worker owns (`owned`, by name, in the shared order).
  void setup_synchronous(const Named& owned);
  void setup_asynchronous(const Named& owned);
  // Owners write what they hold into the shared weights, then every worker views them.
  void rebind();
  // Points the parameters at shared weight version `version`.
  void bind_version(int version);

  RankWeightsContext context_;
  // Declared first: it outlives the model, whose parameters view its memory.
  std::unique_ptr<SharedReplicaState> shared_;
  std::vector<std::pair<torch::Tensor, int64_t>> shared_params_;  // parameter, offset in the shared order
  StagedModel model_{nullptr};
  torch::Tensor
      flat_;  // private gradients, in the shared order (the executor moves them into the shared ones)
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  // Asynchronous: the owned stages' summed gradients, which the update reads while the next
  // step's backwards accumulate into `flat_`; the data-parallel sum of them on the update's thread.
  torch::Tensor owned_grads_;
  std::unique_ptr<Collectives> async_dp_;
  std::unique_ptr<DelayedUpdate> delayed_;
  int bound_version_ = -1;  // the version the parameters view (-1: none yet)
};

}  // namespace rondo

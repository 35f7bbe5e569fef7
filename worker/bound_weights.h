// BoundWeights: the weights of a rank bound to the plan's stages (every schedule but RoundPipe's
// stateless workers). The stages it holds form one StagedModel whose gradients live in one flat
// buffer, summed over the data-parallel group by a GradientReduction (built before the first step,
// on the parameters a checkpoint load left; with expert parallelism the experts' gradients, at the
// buffer's end, are summed over their replicas by a second one). Asynchronous plans (PipeDream-2BW) compute
// on two more copies, step t on version t % 2 with gradients of its own, which the DelayedUpdate turns into
// the optimizer's step one step late.
#pragma once

#include <array>
#include <memory>

#include "worker/delayed_update.h"
#include "worker/gradient_reduction.h"
#include "worker/rank_weights.h"

namespace rondo {

class TiedEmbeddings;

class BoundWeights : public RankWeights {
 public:
  explicit BoundWeights(const RankWeightsContext& context);
  ~BoundWeights() override;

  StagedModel& model() override { return model_; }
  torch::optim::Optimizer& checkpointed_optimizer() override;
  void before_first_step(bool loaded) override;
  StagedModel& compute_model(int64_t at, int64_t now) override;
  DelayedUpdate* delayed() const override { return delayed_.get(); }

  void before_backward(int64_t now, int stage, bool last) override;
  void after_backward(int64_t now, int stage, bool last) override;
  void reduce_gradients(int64_t now) override;
  std::optional<double> gradient_norm_squared(int64_t now) override;

  void update(double lr, double norm) override;
  std::optional<double> collect_delayed_gradients(int64_t now, int64_t run_step) override;
  void update_delayed(int64_t now, double lr, double norm) override;

  std::string describe() const override;
  bool set_ring_order(const std::vector<int>& order) override;
  void add_metrics(MetricsWriter& metrics) override;

 private:
  // The gradients step `now` accumulates: the flat buffer, or its compute version's.
  torch::Tensor step_grads(int64_t now) const;

  RankWeightsContext context_;
  StagedModel model_{nullptr};
  torch::Tensor flat_;  // every parameter's gradient (views into it): the dense ones, then the experts'
  int64_t dense_elements_ = 0;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  // Asynchronous: the compute versions and their gradients (flat, like `flat_`).
  std::array<StagedModel, 2> versions_{StagedModel{nullptr}, StagedModel{nullptr}};
  std::array<torch::Tensor, 2> version_grads_;
  std::unique_ptr<DelayedUpdate> delayed_;
  std::unique_ptr<GradientReduction> reduction_;
  // Expert parallelism: the experts' gradients, summed over their replicas (context.expert_dp).
  std::unique_ptr<GradientReduction> expert_reduction_;
  // model.tie_embeddings with the embedding and the head on different ranks (else null).
  std::unique_ptr<TiedEmbeddings> tied_;
};

}  // namespace rondo

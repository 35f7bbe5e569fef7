// MoeTraining: what a run with mixture-of-experts layers (model.moe) adds to the trainer — the
// expert-parallel group the layers exchange tokens over and the group of each expert's replicas
// its gradients are summed over (both made here, collectively), the runtime the layers share
// (worker's loss scale for the load-balancing loss's gradient), and the router's load as step
// statistics and metrics: per MoE layer and expert, the assignments routed and kept (summed over
// the world and the step's microbatches), and the load-balancing loss.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "comms/collectives.h"
#include "parallelism/exec/moe_layer.h"
#include "proto/report.pb.h"
#include "worker/staged_model.h"

namespace rondo {

namespace plan {
class Plan;
}

class MoeTraining {
 public:
  // Null for a dense model. Collective over `world` (every rank, in the same order as its other
  // group creations) when the plan's ep > 1.
  static std::unique_ptr<MoeTraining> make(const plan::Plan& plan, int rank, Communicator& world,
                                           TimingRecorder* recorder);

  const std::shared_ptr<MoeRuntime>& runtime() const { return runtime_; }

  // moe.a2a_overlap_degree / moe.bwd_degree auto (the plan's 0): profiles the expert group
  // (parallelism/exec/moe_profile.h) and gives each MoE layer `model` holds the degrees the cost
  // model predicts fastest for its microbatches; rank 0 writes the costs and choices to
  // RUN_DIR/moe_costs.json. Collective over the expert group; nothing to do without one.
  void choose_degrees(const plan::Plan& plan, StagedModel& model, int rank, const std::string& run_dir);
  // The experts' gradients' group (null without expert parallelism: the data-parallel group).
  Collectives* expert_dp() const { return expert_dp_coll_.get(); }

  // This rank's load since the last call, laid out alike on every rank (to be summed over the
  // world): the load-balancing loss, then per MoE layer (in model order) each expert's routed
  // assignments, then each expert's kept ones.
  std::vector<double> take_step_values();
  // A step's summed values as metrics: moe_aux_loss, moe_routed / moe_kept ({layer: [per expert]}),
  // moe_dropped (the share of assignments past the capacity), moe_load_max_over_mean (the busiest
  // expert's kept assignments over the mean, the worst layer).
  void metrics_fields(const std::vector<double>& summed, nlohmann::json& row) const;
  // The same as the dashboard's step report (empty before the first step's statistics).
  report::MoeStepReport step_report(const std::vector<double>& summed) const;

 private:
  MoeTraining() = default;

  std::vector<int64_t> layers_;  // the model's MoE layers
  int64_t experts_ = 0;
  // The expert group twice (dispatch, combine: one exchange of each in flight), the experts' replicas.
  std::unique_ptr<Communicator> ep_comm_, ep_combine_comm_, expert_dp_comm_;
  std::unique_ptr<Collectives> ep_coll_, ep_combine_coll_, expert_dp_coll_;
  std::shared_ptr<MoeRuntime> runtime_;
};

}  // namespace rondo

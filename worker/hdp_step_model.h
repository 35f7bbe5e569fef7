// HdpStepModel: hybrid data/context parallelism (plan hdp.enabled) as the step model the executor
// runs. Every step, on every rank alike: the step's batch of whole documents (data/hdp_batches.h,
// drawn from the corpus by the plan's seed: a resumed run draws the same), its plan over the
// pipelines (parallelism/hdp_pipelines.h: the plan's policy and cost model; with one stage a
// pipeline is a rank), and this rank's sub-batches as the step's own schedule: the plan's schedule
// (gpipe or 1f1b) over the step's waves, less the waves in which this rank's pipeline has nothing,
// then the plan's ALLREDUCE and OPTIM. A sub-batch on a group of pipelines runs its attention round
// the group's ranks of the same stage. What a sub-batch computes is worker/hdp_step.h's row; its
// loss is already this rank's share of the step's mean (scale 1). It wraps the rank's plain step
// model (the trainer's), which keeps the gradients, sums them over the data-parallel group (the
// pipelines) and steps the optimizer.
//
// A sub-batch on a group starts each stage's forward with the group meeting (one byte round its
// ring) before the forward's time starts: a rank that waits for its group to form is idle, not
// busy, as in the planner's simulation, and the measured busy max/mean compares with the planned
// one. With training.emulate_compute a sub-batch's forward on a stage sleeps for a third of the
// planner's seconds over the stages, its backward for two thirds.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "comms/communicator.h"
#include "comms/group_view.h"
#include "comms/recorded_transfers.h"
#include "data/exec/step_batches.h"
#include "data/hdp_batches.h"
#include "data/token_corpus.h"
#include "parallelism/hdp_pipelines.h"
#include "pipeline/exec/stage_executor.h"
#include "proto/plan.pb.h"
#include "proto/report.pb.h"
#include "worker/hdp_step.h"
#include "worker/staged_model.h"

namespace rondo {

// The planner's options and cost model as the plan gives them (PlanError when it has no HDP).
HdpOptions hdp_options_of(const plan::Plan& plan, int64_t ranks);
ContextParallelCost hdp_cost_of(const plan::Plan& plan);

class HdpStepModel : public StepModel {
 public:
  // `world` spans the plan's ranks (a duplicate of it carries the rings: built here, collectively).
  // `inner`, `corpus`, `batches` and `world` must outlive this. Throws PlanError unless every rank
  // holds one stage of a pipeline (the data-parallel groups being the pipelines) running gpipe or
  // 1f1b, or when the plan chunks, streams or is stateless.
  HdpStepModel(const plan::Plan& plan, StepModel& inner, const TokenCorpus& corpus,
               const StepBatches& batches, StagedModel model, Communicator& world,
               TimingRecorder* recorder = nullptr);
  ~HdpStepModel() override;

  // Draws and plans the step `batches` is at (the executor asks once, at its start).
  const StepSchedule* step_schedule() override;
  torch::Tensor tokens(int microbatch) override;
  torch::Tensor forward(int stage, int microbatch, const torch::Tensor& input) override;
  torch::Tensor loss(int microbatch, const torch::Tensor& logits, const torch::Tensor& targets) override;
  torch::Tensor forward_loss(int stage, int microbatch, const torch::Tensor& input,
                             const torch::Tensor& targets) override;
  void before_forward(int stage, int microbatch) override;
  void before_backward(int stage, bool last) override { inner_.before_backward(stage, last); }
  void after_backward(int stage, bool last) override { inner_.after_backward(stage, last); }
  void reduce_gradients() override { inner_.reduce_gradients(); }
  void optimizer_step(const StepTimes& so_far) override { inner_.optimizer_step(so_far); }

  // The running (or last) step's batch tokens, and the targets that count in this rank's share
  // (on the last stage: its pipeline's, each group's sequence on the group's first pipeline).
  double step_tokens() const { return static_cast<double>(step_tokens_); }
  double rank_targets() const { return rank_targets_; }
  // The step just run: the policy, sequences, the degree histogram, the ranks the plan left idle,
  // the planner's busy max/mean and step time beside the measured busy max/mean (the busiest
  // rank's compute seconds over the mean of all), and with `timeline` every pipeline's sub-batches
  // as planned (a slot's rank is its pipeline; none past kTimelineSlots of them).
  static constexpr int kTimelineSlots = 4096;
  report::HdpStepReport step_report(double busiest_compute_s, double mean_compute_s, bool timeline) const;
  // The same without the timeline as a metrics row's fields (hdp_*).
  void metrics_fields(double busiest_compute_s, double mean_compute_s, nlohmann::json& row) const;

 private:
  void draw_to(int64_t step);  // the batches drawn up to `step` (1-based)
  std::vector<torch::Tensor> read_sequences(const std::vector<HdpSequence>& batch) const;
  const HdpSubBatch& sub_batch(int microbatch) const;  // this pipeline's in wave `microbatch`
  const HdpRow& row(int microbatch);                   // its row on this rank (made once a step)
  // Its group's ranks of this stage, their transfers in the flight recorder (channel "ring").
  Communicator& group(int microbatch);
  void make_schedule();

  const plan::Plan& plan_;
  StepModel& inner_;
  const TokenCorpus& corpus_;
  const StepBatches& batches_;
  StagedModel model_;
  std::unique_ptr<Communicator> rings_;  // the world duplicated: ring transfers match nothing else
  std::shared_ptr<RecordedTransfers::Channel> ring_channel_;  // every group's waits: one budget
  int rank_;
  int64_t pipeline_, stage_, stages_;
  std::vector<std::vector<int>> world_rank_;  // [pipeline][stage]
  HdpPolicy policy_;
  HdpOptions options_;
  ContextParallelCost cost_;
  std::vector<int64_t> document_lengths_;
  std::unique_ptr<HdpBatches> draws_;
  int64_t drawn_ = 0;  // steps drawn by draws_

  // The running step's.
  HdpPipelinePlan plan_of_step_;
  std::vector<torch::Tensor> sequences_;
  int64_t step_targets_ = 0, step_tokens_ = 0;
  double rank_targets_ = 0;
  StepSchedule schedule_;
  std::map<int, HdpRow> rows_;  // per microbatch (wave)
  struct RingGroup {
    std::unique_ptr<GroupView> view;
    std::unique_ptr<RecordedTransfers> recorded;
  };
  std::map<int, RingGroup> groups_;  // per microbatch on a group: its view
};

}  // namespace rondo

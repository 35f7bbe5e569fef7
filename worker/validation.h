// Validation: the model's loss on held-out documents -- data.split's validation part
// (data/document_split.h) -- every training.eval_interval steps and after the last, as Megatron-LM
// evaluates. It runs the plan's own forward actions, every schedule's (a StageExecutor in
// forward-only mode, with no graph, on a communicator of its own so that none of its transfers can
// match the training stream's); RoundPipe's stateless workers, which hold the whole model, each
// run their share of their pipeline's microbatches through it whole. Either way over
// training.eval_iters global batches of validation windows:
// the same batches at every evaluation, so that one evaluation compares with the next. The loss is
// the mean of the microbatches' mean losses, as the training loss is, summed over the world.
// Collective: every rank constructs it and evaluates at the same steps.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>

#include "comms/collectives.h"
#include "comms/communicator.h"
#include "comms/timing_recorder.h"
#include "data/exec/step_batches.h"
#include "data/sample_windows.h"
#include "data/token_corpus.h"
#include "pipeline/exec/stage_executor.h"
#include "proto/plan.pb.h"
#include "proto/report.pb.h"
#include "worker/staged_model.h"

namespace rondo {

class Validation : public StepModel {
 public:
  struct Result {
    int64_t step = 0;    // the training step whose weights were evaluated
    double loss = 0;     // mean cross-entropy per counted target (nats)
    double targets = 0;  // targets counted, over the world
    double seconds = 0;
    double perplexity() const { return std::exp(loss); }
    void to_report(report::ValidationReport& out) const;
  };

  // `corpus`: the validation documents (at least model.seq_length + 1 tokens, else ConfigError
  // naming data.split). `world` is split for the transfers (collective). `context`: null without
  // context parallelism. All must outlive this.
  Validation(const plan::Plan& plan, int rank, const TokenCorpus& corpus, Communicator& world,
             TimingRecorder* recorder, torch::Device device, const ContextParallel* context);
  ~Validation() override;

  // Whether step `step` evaluates: every eval_interval steps, the last step and a run's exit.
  bool due(int64_t step, bool exiting) const;
  // The loss of `model` (the weights after step `step`) over the validation batches; `stats` sums
  // over the world (every rank calls it).
  Result evaluate(int64_t step, StagedModel& model, Collectives& stats);

  // StepModel: what the forward-only executor calls back.
  torch::Tensor tokens(int microbatch) override;
  torch::Tensor forward(int stage, int microbatch, const torch::Tensor& input) override;
  torch::Tensor loss(int microbatch, const torch::Tensor& logits, const torch::Tensor& targets) override;
  void reduce_gradients() override;
  void optimizer_step(const StepTimes& so_far) override;

 private:
  // Stateless workers: this worker's share of the step's microbatches (every p-th of its
  // pipeline's), each through the whole model; the sum of their losses times the loss scale.
  double whole_model_losses(StagedModel& model);

  const plan::Plan& plan_;
  const plan::RankPlan& me_;
  const ContextParallel* context_;
  SampleWindows windows_;
  std::unique_ptr<StepBatches> batches_;
  std::unique_ptr<Communicator> p2p_;
  std::unique_ptr<StageExecutor> executor_;  // null for stateless workers
  StagedModel* model_ = nullptr;             // during evaluate()
};

}  // namespace rondo

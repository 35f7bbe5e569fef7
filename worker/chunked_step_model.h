// ChunkedStepModel: chunked long-context training (data.chunk_size) as the step model the executor
// runs -- the one place chunks enter a step. It wraps the rank's plain step model (the trainer's),
// passing on its gradients, reduction and optimizer step, and replaces what a microbatch computes.
// Either way the sequences of all the step's microbatches (this rank's share of the global batch)
// are planned into chunks together, as ChunkFlow plans its global batch (data/exec/chunked_rows.h),
// and each target weighs 1 / its microbatch's counted targets, so that the step's loss and
// gradients are the unchunked ones (each microbatch's mean, averaged):
//   one stage holding the whole model: microbatch m trains share m of the chunks by ChunkFlow's
//     schedule (data/exec/chunked_microbatch.h);
//   a pipeline: the step runs its own schedule, whose microbatches are the chunks and whose
//     groups are the long sequences (step_schedule(); data/exec/pipeline_chunks.h).
// The step's chunks, recomputed chunks and longest sequence are counted into one ChunkingStats
// (at pp > 1 on the rank with the embedding), taken at the step's end.
#pragma once

#include <memory>
#include <vector>

#include "data/exec/chunked_microbatch.h"
#include "data/exec/pipeline_chunks.h"
#include "data/exec/step_batches.h"
#include "pipeline/exec/stage_executor.h"
#include "proto/plan.pb.h"
#include "worker/staged_model.h"

namespace rondo {

class ChunkedStepModel : public StepModel {
 public:
  // `loss_grad`: the gradient the executor gives a microbatch's loss at one stage. Throws
  // PlanError when the plan cannot be trained in chunks. `inner` and `batches` must outlive this.
  ChunkedStepModel(const plan::Plan& plan, int rank, StepModel& inner, StepBatches& batches,
                   StagedModel model, double loss_grad);
  ~ChunkedStepModel() override;

  // A pipeline: this step's schedule over its chunks (planned at the step's first call).
  const StepSchedule* step_schedule() override;
  torch::Tensor tokens(int microbatch) override;
  torch::Tensor forward(int stage, int microbatch, const torch::Tensor& input) override;
  torch::Tensor loss(int microbatch, const torch::Tensor& logits, const torch::Tensor& targets) override {
    return inner_.loss(microbatch, logits, targets);
  }
  torch::Tensor forward_loss(int stage, int microbatch, const torch::Tensor& input,
                             const torch::Tensor& targets) override;
  void before_backward(int stage, bool last) override { inner_.before_backward(stage, last); }
  void after_backward(int stage, bool last) override { inner_.after_backward(stage, last); }
  torch::Tensor stage_gradients(int stage) override { return inner_.stage_gradients(stage); }
  void reduce_gradients() override { inner_.reduce_gradients(); }
  void optimizer_step(const StepTimes& so_far) override { inner_.optimizer_step(so_far); }

  // This step's counts; drops what the step's chunks left behind.
  ChunkingStats take_step_stats();

 private:
  // This step's token rows, read once (the executor's microbatches and the plan share them).
  const std::vector<torch::Tensor>& step_tokens();
  // The step's rows of all its microbatches, each target weighted 1 / its microbatch's count.
  struct StepRows {
    torch::Tensor tokens, targets, documents, weights;
  };
  StepRows step_rows();
  // One stage: the step's rows in chunks, planned at the step's first call.
  ChunkedMicrobatch& step_microbatch(int stage);
  // A pipeline: plans the step's chunks and its schedule.
  void plan_pipeline_step();
  torch::Tensor pipeline_forward(int stage, int chunk, const torch::Tensor& input);

  const plan::Plan& plan_;
  int rank_;
  StepModel& inner_;
  StepBatches& batches_;
  StagedModel model_;
  ChunkingOptions options_;
  bool counts_ = true;                                  // this rank counts the step's chunks
  std::unique_ptr<PipelineChunks> pipeline_;            // with pipeline parallelism
  std::vector<torch::Tensor> step_tokens_;              // this step's, per microbatch
  std::unique_ptr<ChunkedMicrobatch> step_microbatch_;  // one stage: this step's
  std::shared_ptr<const ChunkedRows> pipeline_rows_;    // a pipeline: this step's
  std::unique_ptr<StepSchedule> schedule_;              // a pipeline: this step's
  ChunkingStats step_;
};

}  // namespace rondo

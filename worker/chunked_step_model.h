// ChunkedStepModel: chunked long-context training (data.chunk_size) as the step model the executor
// runs -- the one place chunks enter a step. It wraps the rank's plain step model (the trainer's),
// passing on its gradients, reduction and optimizer step, and replaces what a microbatch computes:
//   one stage holding the whole model: the sequences of all the step's microbatches (this rank's
//     share of the global batch) are planned into chunks together, as ChunkFlow plans its global
//     batch, and microbatch m trains share m of them by ChunkFlow's schedule
//     (worker/chunked_microbatch.h). The losses are weighted so that the step's loss and
//     gradients are the unchunked ones (each microbatch's mean, averaged);
//   a pipeline (data.pipeline_chunk_lengths): the schedule's microbatches are chunks, schedule
//     microbatch m being chunk m % chunks of row microbatch m / chunks (worker/pipeline_chunks.h).
// Either way the step's chunks, recomputed chunks and longest sequence are counted into one
// ChunkingStats, taken at the step's end.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "pipeline/exec/stage_executor.h"
#include "proto/plan.pb.h"
#include "worker/chunked_microbatch.h"
#include "worker/pipeline_chunks.h"
#include "worker/staged_model.h"
#include "worker/step_batches.h"

namespace rondo {

class ChunkedStepModel : public StepModel {
 public:
  // `loss_grad`: the gradient the executor gives a microbatch's loss; `recomputes(m)`: whether the
  // executor reruns schedule microbatch m's forward in its backward. Throws PlanError when the plan
  // cannot be trained in chunks. `inner` and `batches` must outlive this.
  ChunkedStepModel(const plan::Plan& plan, StepModel& inner, StepBatches& batches, StagedModel model,
                   double loss_grad, std::function<bool(int)> recomputes);
  ~ChunkedStepModel() override;

  // Schedule microbatches per row microbatch: the pipeline's chunks, or 1.
  int chunks_per_row() const { return pipeline_ ? pipeline_->chunks() : 1; }
  int row_microbatch(int microbatch) const { return microbatch / chunks_per_row(); }

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

  // This step's counts (chunks, recomputed, longest sequence: on the stage with the embedding);
  // drops what the step's chunks left behind.
  ChunkingStats take_step_stats();

 private:
  // One stage: this step's token rows, read once (the executor's microbatches and the plan share
  // them), and the rows in chunks, planned at the step's first call.
  const std::vector<torch::Tensor>& step_tokens();
  ChunkedMicrobatch& step_rows(int stage);
  // The pipeline's chunk forward, counted where the chunk enters the pipeline.
  torch::Tensor pipeline_forward(int stage, int microbatch, const torch::Tensor& input);
  // A pipeline chunk's summed cross-entropy, scaled so that the executor's mean over the schedule's
  // microbatches is the row microbatch's mean over its targets.
  torch::Tensor pipeline_loss(int stage, int microbatch, const torch::Tensor& input,
                              const torch::Tensor& targets);

  const plan::Plan& plan_;
  StepModel& inner_;
  StepBatches& batches_;
  StagedModel model_;
  ChunkingOptions options_;
  std::function<bool(int)> recomputes_;
  std::unique_ptr<PipelineChunks> pipeline_;      // with data.pipeline_chunk_lengths
  std::vector<torch::Tensor> step_tokens_;        // one stage: this step's, per microbatch
  std::unique_ptr<ChunkedMicrobatch> step_rows_;  // one stage: this step's
  ChunkingStats step_;
};

}  // namespace rondo

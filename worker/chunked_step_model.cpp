#include "worker/chunked_step_model.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "common/errors.h"
#include "proto/plan_names.h"

namespace rondo {

ChunkedStepModel::ChunkedStepModel(const plan::Plan& plan, StepModel& inner, StepBatches& batches,
                                   StagedModel model, double loss_grad, std::function<bool(int)> recomputes)
    : plan_(plan),
      inner_(inner),
      batches_(batches),
      model_(std::move(model)),
      recomputes_(std::move(recomputes)) {
  const auto& d = plan.data();
  if (d.chunks_in_memory() < 1 || (plan.stages_size() != 1 && d.pipeline_chunk_lengths_size() == 0)) {
    throw PlanError("plan: chunked training needs data.chunks_in_memory >= 1 (got " +
                    std::to_string(d.chunks_in_memory()) +
                    ") and one stage holding the whole model or data.pipeline_chunk_lengths (got " +
                    std::to_string(plan.stages_size()) + " stages)");
  }
  options_ = {d.chunk_size(), chunk_balance_from_name(name_of(d.chunk_balance())), d.chunks_in_memory(),
              loss_grad};
  if (const auto& lengths = d.pipeline_chunk_lengths(); !lengths.empty()) {
    try {
      pipeline_ =
          std::make_unique<PipelineChunks>(model_, std::vector<int64_t>(lengths.begin(), lengths.end()));
    } catch (const std::invalid_argument& e) {
      throw PlanError(std::string("plan data.pipeline_chunk_lengths: ") + e.what());
    }
  }
}

ChunkedStepModel::~ChunkedStepModel() = default;

torch::Tensor ChunkedStepModel::tokens(int microbatch) {
  if (!pipeline_) return step_tokens().at(static_cast<size_t>(microbatch));
  // The chunk's tokens of each row, and the next one (its last target).
  const int j = microbatch % pipeline_->chunks();
  return batches_.tokens(row_microbatch(microbatch), pipeline_->begin(j), pipeline_->length(j));
}

torch::Tensor ChunkedStepModel::forward(int stage, int microbatch, const torch::Tensor& input) {
  return pipeline_ ? pipeline_forward(stage, microbatch, input) : inner_.forward(stage, microbatch, input);
}

torch::Tensor ChunkedStepModel::forward_loss(int stage, int microbatch, const torch::Tensor& input,
                                             const torch::Tensor& targets) {
  if (pipeline_) return pipeline_loss(stage, microbatch, input, targets);
  // Microbatch m trains share m of the step's chunks (the same rows the executor hands it, with all
  // the others of the step, planned together).
  return step_rows(stage).forward(microbatch, static_cast<int>(plan_.training().num_microbatches()));
}

const std::vector<torch::Tensor>& ChunkedStepModel::step_tokens() {
  if (step_tokens_.empty()) {
    for (int m = 0; m < static_cast<int>(plan_.training().num_microbatches()); ++m)
      step_tokens_.push_back(inner_.tokens(m));
  }
  return step_tokens_;
}

ChunkedMicrobatch& ChunkedStepModel::step_rows(int stage) {
  if (step_rows_) return *step_rows_;
  const auto& rows = step_tokens();
  std::vector<torch::Tensor> inputs, targets, documents, weights;
  for (size_t i = 0; i < rows.size(); ++i) {
    const int m = static_cast<int>(i);
    const auto& tokens = rows[i];
    const auto counted = batches_.counted_targets(m, tokens.slice(1, 1, tokens.size(1)));
    inputs.push_back(tokens.slice(1, 0, tokens.size(1) - 1));
    targets.push_back(counted);
    if (const auto d = batches_.documents(m); d.defined()) documents.push_back(d);
    // The unchunked loss is the mean over microbatches of each one's mean over its counted
    // targets: a target of microbatch m weighs 1 / m's count (and the executor's scale the rest).
    const auto count = std::max<int64_t>(counted.ne(-100).sum().item<int64_t>(), 1);
    weights.push_back(torch::full({counted.size(0)}, 1.0 / static_cast<double>(count), torch::kFloat64));
  }
  step_rows_ = std::make_unique<ChunkedMicrobatch>(
      model_, stage, torch::cat(inputs), torch::cat(targets),
      documents.empty() ? torch::Tensor() : torch::cat(documents), options_, torch::cat(weights));
  return *step_rows_;
}

torch::Tensor ChunkedStepModel::pipeline_forward(int stage, int microbatch, const torch::Tensor& input) {
  const auto documents = batches_.documents(row_microbatch(microbatch));
  if (model_->stage(stage).has_embedding) {
    // Counted once per chunk, where it enters the pipeline; a recomputed one in its graph-less forward.
    const bool grad = torch::GradMode::is_enabled();
    if (!grad || !recomputes_(microbatch)) ++step_.chunks;
    if (!grad) ++step_.recomputed_chunks;
    const int64_t longest = documents.defined() ? document_positions(documents).max().item<int64_t>() + 1
                                                : plan_.model().seq_length();
    step_.longest_sequence = std::max(step_.longest_sequence, longest);
  }
  return pipeline_->forward(stage, microbatch, input, documents);
}

torch::Tensor ChunkedStepModel::pipeline_loss(int stage, int microbatch, const torch::Tensor& input,
                                              const torch::Tensor& targets) {
  const int row = row_microbatch(microbatch), j = microbatch % pipeline_->chunks();
  torch::Tensor counted = targets;
  double row_targets = static_cast<double>(plan_.training().micro_batch_size() * plan_.model().seq_length());
  if (plan_.data().pack()) {
    const auto& crossing = batches_.packing(row).crossing;
    const int64_t b = pipeline_->begin(j);
    counted = targets.masked_fill(crossing.slice(1, b, b + pipeline_->length(j)), -100);
    row_targets = static_cast<double>(crossing.numel() - crossing.sum().item<int64_t>());
  }
  const auto logits = pipeline_forward(stage, microbatch, input);
  const auto sum = torch::nn::functional::cross_entropy(
      logits.view({-1, logits.size(-1)}), counted.reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum).ignore_index(-100));
  return sum * (static_cast<double>(pipeline_->chunks()) / std::max(row_targets, 1.0));
}

ChunkingStats ChunkedStepModel::take_step_stats() {
  if (pipeline_) pipeline_->clear();
  if (step_rows_) step_ = step_rows_->stats();
  step_rows_.reset();
  step_tokens_.clear();
  return std::exchange(step_, ChunkingStats{});
}

}  // namespace rondo

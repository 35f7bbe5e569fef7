#include "worker/chunked_step_model.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "common/errors.h"
#include "pipeline/exec/step_schedule.h"
#include "proto/plan_names.h"

namespace rondo {

ChunkedStepModel::ChunkedStepModel(const plan::Plan& plan, int rank, StepModel& inner, StepBatches& batches,
                                   StagedModel model, double loss_grad)
    : plan_(plan), rank_(rank), inner_(inner), batches_(batches), model_(std::move(model)) {
  const auto& d = plan.data();
  if (d.chunks_in_memory() < 1 || (plan.stages_size() != 1 && d.pipeline_chunk_lengths_size() == 0)) {
    throw PlanError("plan: chunked training needs data.chunks_in_memory >= 1 (got " +
                    std::to_string(d.chunks_in_memory()) +
                    ") and one stage holding the whole model or data.pipeline_chunk_lengths (got " +
                    std::to_string(plan.stages_size()) + " stages)");
  }
  options_ = {d.chunk_size(), chunk_balance_from_name(name_of(d.chunk_balance())), d.chunks_in_memory(),
              loss_grad};
  if (plan.stages_size() > 1) {
    pipeline_ = std::make_unique<PipelineChunks>(model_.ptr());
    const auto& stages = plan.ranks(rank).stages();
    counts_ =
        std::any_of(stages.begin(), stages.end(), [&](uint32_t s) { return plan.stages(s).has_embedding(); });
  }
}

ChunkedStepModel::~ChunkedStepModel() = default;

const StepSchedule* ChunkedStepModel::step_schedule() {
  if (!pipeline_) return nullptr;
  plan_pipeline_step();  // the executor asks once, at the step's start
  return schedule_.get();
}

torch::Tensor ChunkedStepModel::tokens(int microbatch) {
  if (!pipeline_) return step_tokens().at(static_cast<size_t>(microbatch));
  // The chunk's ids, and a column the executor takes for targets (forward_loss has the chunk's own).
  const auto ids =
      pipeline_rows_->inputs(static_cast<size_t>(microbatch), step_tokens().front().device(), false).ids;
  return torch::cat({ids, torch::zeros_like(ids.slice(1, 0, 1))}, 1);
}

torch::Tensor ChunkedStepModel::forward(int stage, int microbatch, const torch::Tensor& input) {
  return pipeline_ ? pipeline_forward(stage, microbatch, input) : inner_.forward(stage, microbatch, input);
}

torch::Tensor ChunkedStepModel::forward_loss(int stage, int microbatch, const torch::Tensor& input,
                                             const torch::Tensor& /*targets*/) {
  const int microbatches = static_cast<int>(plan_.training().num_microbatches());
  // One stage: microbatch m trains share m of the step's chunks (the same rows the executor hands
  // it, with all the others of the step, planned together).
  if (!pipeline_) return step_microbatch(stage).forward(microbatch, microbatches);
  // A pipeline chunk's weighted cross-entropy, scaled so that the executor's mean over the step's
  // chunks is the mean over the microbatches of each one's mean.
  const auto logits = pipeline_forward(stage, microbatch, input);
  const auto in = pipeline_rows_->inputs(static_cast<size_t>(microbatch), logits.device(), false);
  return weighted_cross_entropy(logits, in.targets, in.weights) *
         (static_cast<double>(pipeline_rows_->chunks()) / microbatches);
}

const std::vector<torch::Tensor>& ChunkedStepModel::step_tokens() {
  if (step_tokens_.empty()) {
    for (int m = 0; m < static_cast<int>(plan_.training().num_microbatches()); ++m)
      step_tokens_.push_back(inner_.tokens(m));
  }
  return step_tokens_;
}

ChunkedStepModel::StepRows ChunkedStepModel::step_rows() {
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
  return {torch::cat(inputs), torch::cat(targets),
          documents.empty() ? torch::Tensor() : torch::cat(documents), torch::cat(weights)};
}

ChunkedMicrobatch& ChunkedStepModel::step_microbatch(int stage) {
  if (step_microbatch_) return *step_microbatch_;
  const auto rows = step_rows();
  step_microbatch_ = std::make_unique<ChunkedMicrobatch>(model_.ptr(), stage, rows.tokens, rows.targets,
                                                         rows.documents, options_, rows.weights);
  return *step_microbatch_;
}

void ChunkedStepModel::plan_pipeline_step() {
  pipeline_->clear();
  const auto rows = step_rows();
  auto chunked = std::make_shared<ChunkedRows>(rows.tokens, rows.targets, rows.documents, rows.weights,
                                               options_.chunk_size, options_.balance, model_->cost_dims());
  std::vector<int> groups;
  for (const auto& g : chunked->groups()) groups.push_back(static_cast<int>(g.size()));
  std::vector<int64_t> tokens;
  for (const auto& c : chunked->plan().chunks) tokens.push_back(c.tokens());
  schedule_ = std::make_unique<StepSchedule>(
      chunked_step_schedule(plan_, rank_, ChunkGroups(std::move(groups)), std::move(tokens)));
  pipeline_rows_ = chunked;
  pipeline_->set_rows(std::move(chunked));
  step_ = counts_ ? pipeline_rows_->counts() : ChunkingStats{};
}

torch::Tensor ChunkedStepModel::pipeline_forward(int stage, int chunk, const torch::Tensor& input) {
  // A recomputed chunk is counted by its graph-less forward, where it enters the pipeline.
  if (counts_ && model_->stage(stage).has_embedding && !torch::GradMode::is_enabled())
    ++step_.recomputed_chunks;
  return pipeline_->forward(stage, chunk, input);
}

ChunkingStats ChunkedStepModel::take_step_stats() {
  // Called in the step's OPTIM: the step's schedule stays (the executor still runs its actions)
  // until the next step's replaces it.
  if (pipeline_) pipeline_->clear();
  pipeline_rows_.reset();
  if (step_microbatch_) step_ = step_microbatch_->stats();
  step_microbatch_.reset();
  step_tokens_.clear();
  return std::exchange(step_, ChunkingStats{});
}

}  // namespace rondo

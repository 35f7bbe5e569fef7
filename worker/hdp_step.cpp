#include "worker/hdp_step.h"

#include <algorithm>
#include <stdexcept>

#include "parallelism/exec/ring_attention.h"

namespace rondo {

namespace {

const auto kLong = torch::TensorOptions().dtype(torch::kInt64);

// Sequences alone on this rank: one row, each its own document.
torch::Tensor packed_loss(StagedModel& model, const std::vector<torch::Tensor>& sequences,
                          const HdpSubBatch& sb, int64_t step_targets) {
  std::vector<torch::Tensor> inputs, targets, documents;
  for (size_t k = 0; k < sb.sequences.size(); ++k) {
    const auto& t = sequences.at(static_cast<size_t>(sb.sequences[k]));
    inputs.push_back(t.slice(0, 0, -1));
    targets.push_back(t.slice(0, 1));
    documents.push_back(torch::full({t.size(0) - 1}, static_cast<int64_t>(k), kLong));
  }
  const auto logits =
      model->forward_stage(0, torch::cat(inputs).unsqueeze(0), torch::cat(documents).unsqueeze(0));
  return model->loss(logits, torch::cat(targets).unsqueeze(0), step_targets);
}

// One sequence on a group of ranks: this rank's zigzag share of it, attention round the group.
torch::Tensor group_loss(StagedModel& model, const torch::Tensor& tokens, const HdpSubBatch& sb,
                         Communicator& world, int64_t step_targets, std::unique_ptr<GroupView>& group) {
  const auto d = static_cast<int64_t>(sb.group.size());
  const int64_t length = tokens.size(0) - 1, padded = (length + 2 * d - 1) / (2 * d) * (2 * d);
  const int64_t pad = padded - length;
  const auto input = torch::cat({tokens.slice(0, 0, -1), torch::zeros({pad}, kLong)}).unsqueeze(0);
  const auto targets = torch::cat({tokens.slice(0, 1), torch::full({pad}, -100, kLong)}).unsqueeze(0);
  const auto documents = torch::cat({torch::zeros({length}, kLong), torch::ones({pad}, kLong)}).unsqueeze(0);
  group = std::make_unique<GroupView>(world, std::vector<int>(sb.group.begin(), sb.group.end()));
  const auto held = zigzag_indices(padded, d, group->rank());
  const ContextParallel context{held, group.get()};
  const auto logits = model->forward_stage(0, input.index_select(1, held), documents, &context);
  return model->loss(logits, targets.index_select(1, held), step_targets);
}

}  // namespace

int64_t hdp_step_targets(const std::vector<torch::Tensor>& sequences) {
  int64_t n = 0;
  for (const auto& s : sequences) n += s.slice(0, 1).ne(-100).sum().item<int64_t>();
  return n;
}

torch::Tensor hdp_sub_batch_loss(StagedModel& model, const std::vector<torch::Tensor>& sequences,
                                 const HdpSubBatch& sb, Communicator& world, int64_t step_targets,
                                 std::unique_ptr<GroupView>& group) {
  step_targets = std::max<int64_t>(step_targets, 1);
  if (sb.group.size() == 1) return packed_loss(model, sequences, sb, step_targets);
  return group_loss(model, sequences.at(static_cast<size_t>(sb.sequences.at(0))), sb, world, step_targets,
                    group);
}

double hdp_forward_backward(StagedModel& model, const std::vector<torch::Tensor>& sequences,
                            const HdpPlan& plan, int rank, Communicator& world) {
  if (plan.placements.size() != sequences.size())
    throw std::invalid_argument("hdp step: a plan of " + std::to_string(plan.placements.size()) +
                                " sequences for " + std::to_string(sequences.size()));
  const int64_t step_targets = hdp_step_targets(sequences);
  double total = 0;
  for (const auto& sb : plan.sub_batches.at(static_cast<size_t>(rank))) {
    std::unique_ptr<GroupView> group;  // the view must outlive the backward
    const auto loss = hdp_sub_batch_loss(model, sequences, sb, world, step_targets, group);
    loss.backward();
    total += loss.item<double>();
  }
  return total;
}

}  // namespace rondo

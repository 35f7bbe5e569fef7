#include "worker/hdp_step.h"

#include <algorithm>
#include <stdexcept>

#include "comms/group_view.h"
#include "parallelism/exec/ring_attention.h"

namespace rondo {

namespace {

const auto kLong = torch::TensorOptions().dtype(torch::kInt64);

// Sequences alone on this rank: one row, each its own document. Forward and backward; the loss.
double packed_step(StagedModel& model, const std::vector<torch::Tensor>& sequences, const HdpSubBatch& sb,
                   int64_t step_targets) {
  std::vector<torch::Tensor> inputs, targets, documents;
  for (size_t k = 0; k < sb.sequences.size(); ++k) {
    const auto& t = sequences.at(static_cast<size_t>(sb.sequences[k]));
    inputs.push_back(t.slice(0, 0, -1));
    targets.push_back(t.slice(0, 1));
    documents.push_back(torch::full({t.size(0) - 1}, static_cast<int64_t>(k), kLong));
  }
  const auto logits =
      model->forward_stage(0, torch::cat(inputs).unsqueeze(0), torch::cat(documents).unsqueeze(0));
  const auto loss = model->loss(logits, torch::cat(targets).unsqueeze(0), step_targets);
  loss.backward();
  return loss.item<double>();
}

// One sequence on a group of ranks: this rank's zigzag share of it, attention round the group.
// Forward and backward (the group's view must outlive the backward); the loss.
double group_step(StagedModel& model, const torch::Tensor& tokens, const HdpSubBatch& sb, Communicator& world,
                  int64_t step_targets) {
  const auto d = static_cast<int64_t>(sb.group.size());
  const int64_t length = tokens.size(0) - 1, padded = (length + 2 * d - 1) / (2 * d) * (2 * d);
  const int64_t pad = padded - length;
  const auto input = torch::cat({tokens.slice(0, 0, -1), torch::zeros({pad}, kLong)}).unsqueeze(0);
  const auto targets = torch::cat({tokens.slice(0, 1), torch::full({pad}, -100, kLong)}).unsqueeze(0);
  const auto documents = torch::cat({torch::zeros({length}, kLong), torch::ones({pad}, kLong)}).unsqueeze(0);
  GroupView group(world, std::vector<int>(sb.group.begin(), sb.group.end()));
  const auto held = zigzag_indices(padded, d, group.rank());
  const ContextParallel context{held, &group};
  const auto logits = model->forward_stage(0, input.index_select(1, held), documents, &context);
  const auto loss = model->loss(logits, targets.index_select(1, held), step_targets);
  loss.backward();
  return loss.item<double>();
}

}  // namespace

double hdp_forward_backward(StagedModel& model, const std::vector<torch::Tensor>& sequences,
                            const HdpPlan& plan, int rank, Communicator& world) {
  if (plan.placements.size() != sequences.size())
    throw std::invalid_argument("hdp step: a plan of " + std::to_string(plan.placements.size()) +
                                " sequences for " + std::to_string(sequences.size()));
  int64_t step_targets = 0;
  for (const auto& s : sequences) step_targets += s.size(0) - 1;
  step_targets = std::max<int64_t>(step_targets, 1);
  double total = 0;
  for (const auto& sb : plan.sub_batches.at(static_cast<size_t>(rank))) {
    total += sb.group.size() == 1 ? packed_step(model, sequences, sb, step_targets)
                                  : group_step(model, sequences.at(static_cast<size_t>(sb.sequences.at(0))),
                                               sb, world, step_targets);
  }
  return total;
}

}  // namespace rondo

#include "worker/hdp_step.h"

#include <algorithm>
#include <stdexcept>

#include "parallelism/exec/ring_attention.h"

namespace rondo {

namespace {

const auto kLong = torch::TensorOptions().dtype(torch::kInt64);

// Sequences alone on this rank: one row, each its own document.
HdpRow packed_row(const std::vector<torch::Tensor>& sequences, const HdpSubBatch& sb) {
  std::vector<torch::Tensor> inputs, targets, documents;
  for (size_t k = 0; k < sb.sequences.size(); ++k) {
    const auto& t = sequences.at(static_cast<size_t>(sb.sequences[k]));
    inputs.push_back(t.slice(0, 0, -1));
    targets.push_back(t.slice(0, 1));
    documents.push_back(torch::full({t.size(0) - 1}, static_cast<int64_t>(k), kLong));
  }
  return {torch::cat(inputs).unsqueeze(0),
          torch::cat(targets).unsqueeze(0),
          torch::cat(documents).unsqueeze(0),
          {}};
}

// One sequence on a group of ranks: group rank `member`'s zigzag share of it, padded to a multiple
// of 2 x the degree (the padding a document of its own, with no targets).
HdpRow group_row(const torch::Tensor& tokens, int64_t degree, int64_t member) {
  const int64_t length = tokens.size(0) - 1, padded = (length + 2 * degree - 1) / (2 * degree) * (2 * degree);
  const int64_t pad = padded - length;
  const auto input = torch::cat({tokens.slice(0, 0, -1), torch::zeros({pad}, kLong)}).unsqueeze(0);
  const auto targets = torch::cat({tokens.slice(0, 1), torch::full({pad}, -100, kLong)}).unsqueeze(0);
  const auto documents = torch::cat({torch::zeros({length}, kLong), torch::ones({pad}, kLong)}).unsqueeze(0);
  const auto held = zigzag_indices(padded, degree, member);
  return {input.index_select(1, held), targets.index_select(1, held), documents, held};
}

}  // namespace

HdpRow hdp_row(const std::vector<torch::Tensor>& sequences, const HdpSubBatch& sb, int64_t member) {
  if (sb.group.size() == 1) return packed_row(sequences, sb);
  return group_row(sequences.at(static_cast<size_t>(sb.sequences.at(0))),
                   static_cast<int64_t>(sb.group.size()), member);
}

int64_t hdp_step_targets(const std::vector<torch::Tensor>& sequences) {
  int64_t n = 0;
  for (const auto& s : sequences) n += s.slice(0, 1).ne(-100).sum().item<int64_t>();
  return n;
}

torch::Tensor hdp_sub_batch_loss(StagedModel& model, const std::vector<torch::Tensor>& sequences,
                                 const HdpSubBatch& sb, Communicator& world, int64_t step_targets,
                                 std::unique_ptr<GroupView>& group) {
  step_targets = std::max<int64_t>(step_targets, 1);
  if (sb.group.size() == 1) {
    const auto row = hdp_row(sequences, sb, 0);
    return model->loss(model->forward_stage(0, row.input, row.documents), row.targets, step_targets);
  }
  group = std::make_unique<GroupView>(world, std::vector<int>(sb.group.begin(), sb.group.end()));
  const auto row = hdp_row(sequences, sb, group->rank());
  const ContextParallel context{row.held, group.get()};
  return model->loss(model->forward_stage(0, row.input, row.documents, &context), row.targets, step_targets);
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

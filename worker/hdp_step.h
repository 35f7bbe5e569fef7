// One step of hybrid data/context parallelism (parallel.hdp) on one rank: the sub-batches the
// step's plan gives it (parallelism/hdp_planner.h), in order, forward and backward on the whole
// model (one stage). Sequences alone on the rank are packed into one row of documents; a sequence
// on a group is padded to a multiple of 2 x its degree (the padding a document of its own, with
// no targets), split zigzag-wise, and its attention runs round the group (a GroupView of `world`:
// no communicator to create, the groups change every step). Every loss is its targets' summed
// cross-entropy over the step's target count, so the ranks' losses and gradients add up to the
// whole batch's mean: sum the gradients over the world. The ranks must all run the step (each its
// own sub-batches, groups in the plan's order).
//
// A sequence is its tokens and its last target ([L + 1] int64); a target of -100 does not count
// (a sequence that ends its document has no last target).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "comms/communicator.h"
#include "comms/group_view.h"
#include "parallelism/hdp_planner.h"
#include "worker/staged_model.h"

namespace rondo {

// What a sub-batch computes on one of its ranks: token ids [1, t] and their targets [1, t] (-100:
// none), the row's document ids [1, T] (its whole length), and for a sequence on a group the
// global positions [t] of the t tokens this member holds (zigzag; undefined for sequences alone).
struct HdpRow {
  torch::Tensor input, targets, documents, held;
};
// Sub-batch `sb`'s row on its group's member `member` (0 for a sub-batch alone on its rank).
HdpRow hdp_row(const std::vector<torch::Tensor>& sequences, const HdpSubBatch& sb, int64_t member);

// The targets of the step's sequences that count.
int64_t hdp_step_targets(const std::vector<torch::Tensor>& sequences);

// Sub-batch `sb`'s loss over `step_targets`, its graph recorded (the caller runs the backward).
// For a sub-batch on several ranks `group` receives the group's view, which the backward uses: it
// must outlive it.
torch::Tensor hdp_sub_batch_loss(StagedModel& model, const std::vector<torch::Tensor>& sequences,
                                 const HdpSubBatch& sb, Communicator& world, int64_t step_targets,
                                 std::unique_ptr<GroupView>& group);

// The whole step: every sub-batch of the rank, forward and backward. `sequences`: the step's
// batch, in the plan's order. Returns this rank's share of the step's mean loss.
double hdp_forward_backward(StagedModel& model, const std::vector<torch::Tensor>& sequences,
                            const HdpPlan& plan, int rank, Communicator& world);

}  // namespace rondo

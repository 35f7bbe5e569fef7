// The expert-parallel part of an MoE layer, pipelined as FSMoE does: the rows a rank sends to the
// experts of its group are cut into `degree` chunks along each expert's rows (its capacity
// dimension); chunk c+1's dispatch (an all-to-all, started and advanced between pieces of
// compute) runs while the experts compute chunk c, and chunk c-1's combine (the all-to-all back)
// runs alongside. The backward does the same with its own degree: the output gradients of chunk
// c+1 travel to the experts while chunk c's expert backward runs, and chunk c-1's input gradients
// travel home. Dispatch and combine use two communicators of the same group, so one of each can be
// in flight. The result equals the unpipelined exchange at every degree (the same rows meet the
// same experts), which is how it is tested.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace rondo {

class Collectives;

// How a rank's rows meet the group's experts: `members` ranks with `local` experts each;
// sent[j * local + l]: rows this rank sends to member j's expert l (the rows lie in that order);
// received[j * local + l]: rows member j sends to this rank's expert l.
struct ExpertExchange {
  int members = 1;
  int64_t local = 1;
  std::vector<int64_t> sent, received;
};

struct ExpertDegrees {
  int forward = 1, backward = 1;
};

// Runs local expert `l` on rows [n, hidden], recorded by autograd.
using ExpertCompute = std::function<torch::Tensor(int64_t l, const torch::Tensor& rows)>;

// Rows [sum(sent), hidden] -> the experts' outputs for them, in the same order; differentiable in
// `rows` and in whatever `compute` uses. Collective over the group (every member calls it with the
// same degrees, in the same order as its other calls on `dispatch` and `combine`).
// `gap` (optional) runs between the backward's expert calls, as the exchanges in flight advance:
// other communication that can progress there (the dense gradients' bucketed reduction).
torch::Tensor run_expert_pipeline(const torch::Tensor& rows, const ExpertExchange& exchange,
                                  ExpertDegrees degrees, Collectives& dispatch, Collectives& combine,
                                  const ExpertCompute& compute, std::function<void()> gap = {});

// True while an expert backward's gradients are not the last this backward adds to the experts'
// weights (a gradient reduction must not take them as final yet).
bool expert_gradients_partial();

}  // namespace rondo

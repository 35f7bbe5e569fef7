// A discrete-event simulation of an MoE layer's expert pipeline, step by step as
// parallelism/exec/expert_pipeline.cpp runs it, against which the closed-form model of
// parallelism/moe_cost.h (and the degree it chooses) is judged by brute force: one thread waits for
// chunk c's dispatch, starts chunk c+1's, computes chunk c (atoms / degree calls of every local
// expert), waits for chunk c-1's combine and starts chunk c's. The link is a fluid: a transfer
// waits its alpha, then the transfers past their alpha share the link's bandwidth equally (a
// dispatch and a combine in flight together each get half), where the closed form serialises
// them and advances in lock step. Torch-free.
#pragma once

#include "parallelism/moe_cost.h"

namespace rondo {

// Seconds of the layer's expert part, forward or backward, at `degree` chunks cut into `atoms`
// pieces in all (0: `degree`; a multiple of it), with the same costs as predict_expert_pipeline.
double simulate_expert_pipeline(const MoeCosts& costs, const MoeLayerWork& work, int degree, bool backward,
                                int atoms = 0);

// The fastest pair of degrees in 1..max_degree by simulating every pair (forward and backward cut
// at their least common multiple).
struct SimulatedDegrees {
  int forward = 1, backward = 1;
  double seconds = 0;  // forward + backward
};
SimulatedDegrees best_simulated_degrees(const MoeCosts& costs, const MoeLayerWork& work, int max_degree);
// Forward + backward of a pair, simulated.
double simulate_degree_pair(const MoeCosts& costs, const MoeLayerWork& work, int forward, int backward);

}  // namespace rondo

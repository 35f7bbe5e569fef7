// ContextParallelCost: seconds one sequence of L tokens takes (forward and backward) on a
// context-parallel group of d ranks, from the shared FLOP formulas (model_flops.h): each rank holds
// L/d of the tokens, so the blocks' linear layers, the embedding and the LM head cost L/d tokens'
// worth, and attention L^2/d (its queries against every key, as the implementation computes it).
// Ring attention passes key/value blocks round the group: d steps per layer, each computing one
// block while the next arrives (overlapped), so a step takes the longer of the two; the backward
// computes twice the forward and passes keys, values and their gradients (twice the bytes).
// A group within one host passes its ring at link_bytes_per_s; one spanning hosts at
// cross_host_bytes_per_s (a rank's share of its host's network). The HDP planner (hdp_planner.h)
// sizes groups, places them and balances ranks with it.
#pragma once

#include <cstdint>

#include "parallelism/model_parameters.h"

namespace rondo {

struct ContextParallelCostSpec {
  GptDims dims;
  double device_flops = 1e12;         // sustained, per second, of one device
  double link_bytes_per_s = 25e9;     // between the ranks of a group on one host
  double link_latency_s = 10e-6;      // per transfer
  double cross_host_bytes_per_s = 0;  // between ranks on different hosts (0: link_bytes_per_s)
  double bytes_per_value = 4.0;       // of a key/value element on the wire
};

class ContextParallelCost {
 public:
  explicit ContextParallelCost(ContextParallelCostSpec spec) : spec_(spec) {}

  // Forward and backward of a sequence of `tokens` on `degree` ranks: each rank's seconds, the ring
  // passing between hosts or not.
  double seconds(int64_t tokens, int64_t degree, bool across_hosts = false) const;
  // The same without the ring's transfers (the compute alone, each rank's share).
  double compute_seconds(int64_t tokens, int64_t degree) const;
  // Rank-seconds the sequence occupies: degree * seconds.
  double work(int64_t tokens, int64_t degree, bool across_hosts = false) const {
    return static_cast<double>(degree) * seconds(tokens, degree, across_hosts);
  }

  const ContextParallelCostSpec& spec() const { return spec_; }

 private:
  ContextParallelCostSpec spec_;
};

}  // namespace rondo

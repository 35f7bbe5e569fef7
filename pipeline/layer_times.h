// Stage costs from per-layer times, the inputs RoundPipe's pipeline simulator takes: every
// transformer layer costs the same forward and backward time per microbatch, the LM head has its
// own, stages are given as layer counts, and a hop between stages on different ranks costs a
// fixed time. With a separate backward partition (RoundPipe), the forward stages hold only
// transformer layers and backward stage 0 fuses the LM head: it runs the head's forward, then the
// head's and its layers' backward, without recomputation; every other backward stage recomputes
// its layers first. The other schedules recompute each stage's layers before its backward when
// `recompute` is set (RoundPipe's simulator always does), and their last stage holds the head.
#pragma once

#include <string>
#include <vector>

#include "pipeline/stage_costs.h"

namespace rondo {

struct LayerTimes {
  double forward = 0, backward = 0;            // one transformer layer, one microbatch
  double head_forward = 0, head_backward = 0;  // the LM head, one microbatch
  double hop = 0;                              // one transfer between different ranks
  bool recompute = true;                       // full recomputation before each backward
  // Stateless workers' host link (StageCosts): weight bytes of a layer and of the LM head, and
  // the link's bytes per time unit (0: free).
  double layer_bytes = 0, head_bytes = 0, host_bandwidth = 0;
};

struct StagePartition {
  std::vector<int> forward;   // transformer layers per (virtual) stage, in pipeline order
  std::vector<int> backward;  // RoundPipe: layers per backward stage, the last layers first
  bool separate_backward() const { return !backward.empty(); }
};

// Parses "4,4,4,4" or, for RoundPipe, "5,5,6|0,2,2,...". Throws ConfigError naming `key` for an
// empty list, a negative or non-integer count, or partitions whose sums differ from num_layers.
StagePartition parse_stage_partition(const std::string& text, int num_layers, const std::string& key);

// Forward and backward durations per stage; for a separate backward partition also b_lead
// (the fused head's forward, or the recomputation), which may run before the gradient arrives.
// The weight-gradient part w of a backward is half of its backward proper (I = B - W).
StageCosts stage_costs_from_layer_times(const LayerTimes& times, const StagePartition& partition);

}  // namespace rondo

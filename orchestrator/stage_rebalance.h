// faults.policy replan around a slow rank: a pipeline stage partition (pipeline.stage_partition)
// that gives the slow ranks' stages fewer layers. Each rank's speed is its measured compute
// (forward + backward seconds a step, from its step reports) over the cost model's prediction for
// its stages; a slow rank's factor is that ratio over the median of the other ranks'. The layers
// are then cut into contiguous stages minimising the slowest stage's predicted work times its
// factor (dynamic programming over the cut points). Torch-free.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "orchestrator/config.h"
#include "proto/plan.pb.h"

namespace rondo {

struct StageRebalance {
  std::string partition;        // "3,1": layers per stage; empty when none is possible or better
  std::string why_not;          // then: why
  std::vector<double> factors;  // per rank: how much slower than its stages predict (1: healthy)
};

// Per world rank: the cost model's forward + backward seconds for its stages (one microbatch), for a
// pipeline of fixed stages (pp > 1; not RoundPipe's stateless workers, HDP or chunked steps, whose
// ranks' work changes step to step); empty otherwise. The fault detector's slow-stage rule.
std::vector<double> predicted_rank_compute(const Config& config, const plan::Plan& plan);
// Whether the config's plan would have them (checked before building it).
bool has_rank_compute_predictions(const Config& config);

// `busy_s`: per world rank, its measured forward + backward seconds a step (0: unknown).
StageRebalance rebalance_stages(const Config& config, const plan::Plan& plan,
                                const std::vector<double>& busy_s, const std::set<int>& slow);

}  // namespace rondo

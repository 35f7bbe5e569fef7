// RoundPipe's forward/backward partitions (automatic or given) and the dispatch of its tasks
// over stateless workers (see roundpipe_schedule.cpp for the model).
#pragma once

#include <vector>

#include "pipeline/pipeline_schedule.h"
#include "pipeline/stage_costs.h"

namespace rondo {

struct RoundPipePartition {
  std::vector<int> forward_bounds;   // forward stage s covers [bounds[s], bounds[s+1])
  std::vector<int> backward_bounds;  // backward stage k covers [bounds[k+1], bounds[k]); k=0 last layers
  StageCosts costs;                  // f per forward stage, b per backward stage (recompute included)
  std::vector<double> forward_share, backward_share;  // in 1/workers of the model
};

// Partitions per-layer forward costs for `workers` stateless workers: tasks of about one
// worker's forward share each; backward stages hold about a third of the layers of a forward
// stage (their work is recompute + backward), the first of them fusing the last layers.
RoundPipePartition roundpipe_partition(const std::vector<double>& layer_costs, int workers);

// A given partition (layer counts; the bounds count transformer layers) with its stage costs.
RoundPipePartition roundpipe_partition(const StagePartition& partition, const StageCosts& costs, int workers);

PipelineSchedule roundpipe_schedule(const ScheduleRequest& request);

}  // namespace rondo

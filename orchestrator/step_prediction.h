// Step-time and memory prediction of a plan before anything runs: the config's model becomes
// per-stage op durations (parallelism/cost_model.h at pipeline.device_tflops), the schedule is
// simulated with point-to-point transfers of one microbatch's boundary activation, and each
// pipeline rank's peak memory is its weights, gradients and AdamW state plus its peak in-flight
// activations.
#pragma once

#include <cstdint>
#include <vector>

#include "orchestrator/config.h"
#include "parallelism/cost_model.h"
#include "pipeline/pipeline_schedule.h"
#include "pipeline/stage_costs.h"

namespace rondo {

struct RankPrediction {
  int pp_rank = 0;
  double busy_s = 0;
  double peak_activations = 0;  // in microbatches of the rank's full share of layers
  double weight_bytes = 0;      // parameters + gradients + optimizer state
  double activation_bytes = 0;  // at the peak
  double peak_bytes() const { return weight_bytes + activation_bytes; }
};

struct StepPrediction {
  double step_time_s = 0;
  double bubble_fraction = 0;
  double exposed_comm_s = 0;
  std::vector<RankPrediction> ranks;  // per pipeline rank
  StageCosts costs;                   // the op durations simulated (seconds)
};

// The cost model of the config's model, micro-batch, recomputation and device (tp * cp per stage).
CostModel cost_model(const Config& config);

// Seconds of each op of each stage at pipeline.device_tflops, and the p2p link of the config.
StageCosts predicted_stage_costs(const Config& config, const std::vector<StageLayers>& stages);

// `backward_stages`: RoundPipe's backward partition (empty for schedules whose stages are bound
// to ranks). A stateless worker's memory is its current and prefetched stage and one task's
// working set; a bound rank's is its stages' weights and optimizer state plus its peak in-flight
// activations.
StepPrediction predict_step(const Config& config, const PipelineSchedule& schedule,
                            const std::vector<StageLayers>& stages,
                            const std::vector<StageLayers>& backward_stages = {});

}  // namespace rondo

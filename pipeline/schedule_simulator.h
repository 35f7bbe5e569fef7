// ScheduleSimulator: times a schedule's fixed per-rank order with op durations from StageCosts
// and point-to-point transfers of alpha + bytes/beta between different ranks. Reports makespan,
// bubble (idle / (makespan x ranks)), host-link weight uploads and gradient downloads of stateless
// workers (see StageCosts), per-rank peak in-flight activations (units of one
// microbatch's activations of the rank's full share of layers: an interleaved chunk counts 1/v;
// freed when its B ends; with a split backward, PipelineSchedule::weight_grad_memory of it is
// held from I until W ends), exposed communication, and the timeline. A schedule that
// cannot finish (a dependency cycle) is reported with the ranks and ops that wait on each other.
#pragma once

#include <string>
#include <vector>

#include "pipeline/pipeline_schedule.h"
#include "pipeline/stage_costs.h"

namespace rondo {

struct TimedAction {
  ComputeAction action;
  double start = 0, end = 0;
  double comm_wait = 0;  // part of the wait before start caused by a transfer
};

struct SimulationResult {
  double makespan = 0;
  double bubble_fraction = 0;
  double exposed_comm = 0;               // summed over ranks
  double comm_total = 0;                 // every transfer between different ranks, summed
  double exposed_host_transfer = 0;      // waits for weight uploads (stateless workers), summed
  std::vector<double> busy;              // per rank
  std::vector<double> peak_activations;  // per rank
  std::vector<double> exposed_comm_per_rank;
  std::vector<std::vector<TimedAction>> timeline;  // per rank, in order
};

// Throws PlanError if the schedule deadlocks or references an op that never runs.
SimulationResult simulate_schedule(const PipelineSchedule& schedule, const StageCosts& costs);

// The bubble in the steady state of a multi-iteration run: the idle share of all ranks between
// the end of the first iteration and the end of the second-to-last (the last, with two
// iterations), so the pipeline's first fill and last drain are left out. Equals
// bubble_fraction when the schedule has one iteration.
double steady_state_bubble(const PipelineSchedule& schedule, const SimulationResult& result);
// One iteration's time in that steady state (the window over the iterations it spans); the
// makespan with one iteration.
double steady_state_iteration_time(const PipelineSchedule& schedule, const SimulationResult& result);

// The bubble split as RoundPipe's simulator splits it, each part summed over ranks (time units):
// fill, a rank's idle time before its first op; switch, the idle time between the end of its
// warm-up forwards (the (p - rank)-th forward; for roundpipe, which has no warm-up phase, the
// last forward before its first backward) and that first backward, i.e. the wait for the first
// gradient; drain, from its last backward to the makespan; intra, the rest (steady state).
struct BubbleBreakdown {
  double fill = 0, phase_switch = 0, drain = 0, intra = 0;
};
BubbleBreakdown bubble_breakdown(const PipelineSchedule& schedule, const StageCosts& costs,
                                 const SimulationResult& result);

}  // namespace rondo

// Interchange with torch.distributed.pipelining's per-rank action CSV (compute_only format): one
// row per rank, one cell per time slot, actions written {stage}{F|I|B|W}{microbatch}, an empty
// cell for an idle slot. Slots come from timing the schedule with every op one slot long.
// Durations travel in a second CSV of the same shape (a number where the action CSV has an
// action). Import followed by export reproduces the file exactly.
#pragma once

#include <string>

#include "pipeline/pipeline_schedule.h"
#include "pipeline/schedule_simulator.h"
#include "pipeline/stage_costs.h"

namespace rondo {

std::string schedule_to_csv(const PipelineSchedule& schedule);

// Durations of `result`'s ops in the layout of schedule_to_csv(schedule).
std::string durations_to_csv(const PipelineSchedule& schedule, const SimulationResult& result);

// Parses an action CSV; pp is the row count, stages and microbatches the largest indices + 1,
// split backward if any I or W appears. Throws PlanError naming the row and column of a bad cell.
PipelineSchedule schedule_from_csv(const std::string& csv, const std::string& name);

// Per-stage costs from a durations CSV aligned with `schedule` (the mean duration of each kind).
StageCosts stage_costs_from_csv(const PipelineSchedule& schedule, const std::string& durations_csv);

}  // namespace rondo

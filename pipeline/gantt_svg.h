// Gantt chart of a simulated schedule as a standalone SVG: one row per rank, F/B/I/W coloured,
// each op labelled with its microbatch when wide enough, idle time left as the grey row
// background, and a time axis; the title gives makespan and bubble.
#pragma once

#include <string>

#include "pipeline/pipeline_schedule.h"
#include "pipeline/schedule_simulator.h"

namespace rondo {

std::string gantt_svg(const PipelineSchedule& schedule, const SimulationResult& result);

}  // namespace rondo

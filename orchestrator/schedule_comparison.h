// `rondo plan --compare-schedules`: the config planned under each pipeline schedule, side by
// side: predicted step time, bubble, the largest per-rank memory, and why a schedule cannot be
// planned (a memory cap it exceeds, a layout it does not fit).
#pragma once

#include <string>
#include <vector>

#include "orchestrator/config.h"

namespace rondo {

struct ScheduleComparison {
  std::string schedule;
  int virtual_stages = 1;
  bool planned = false;
  std::string refusal;  // the ConfigError's key and reason when not planned
  double step_time_s = 0, bubble_fraction = 0, peak_bytes = 0;
};

// `schedules` empty: every schedule. Interleaved and looped schedules take the config's
// virtual_pipeline_model_parallel_size, or 2 when it is 1; the others 1.
std::vector<ScheduleComparison> compare_schedules(const Config& config, std::vector<std::string> schedules);

// A Markdown table of the comparison, fastest planned schedule first.
std::string comparison_table(const std::vector<ScheduleComparison>& rows);

}  // namespace rondo

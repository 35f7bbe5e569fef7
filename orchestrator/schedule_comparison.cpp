#include "orchestrator/schedule_comparison.h"

#include <algorithm>
#include <cstdio>

#include "common/errors.h"
#include "orchestrator/plan_builder.h"
#include "pipeline/pipeline_schedule.h"

namespace rondo {

std::vector<ScheduleComparison> compare_schedules(const Config& config, std::vector<std::string> schedules) {
  std::erase(schedules, "");  // `--compare-schedules` without a value
  if (schedules.empty()) schedules = schedule_names();
  std::vector<ScheduleComparison> out;
  for (const auto& name : schedules) {
    Config c = config;
    c.pipeline.schedule = name;
    int64_t& vpp = c.parallel.virtual_pipeline_model_parallel_size;
    vpp = takes_virtual_stages(name) ? std::max<int64_t>(vpp, 2) : 1;
    ScheduleComparison row;
    row.schedule = name;
    row.virtual_stages = chunks_per_rank(name, static_cast<int>(vpp));
    try {
      const auto plan = build_plan(c);
      const auto& p = plan.prediction();
      row.planned = true;
      row.step_time_s = p.step_time_s();
      row.bubble_fraction = p.bubble_fraction();
      for (const auto& r : p.ranks())
        row.peak_bytes = std::max(row.peak_bytes, r.weight_bytes() + r.activation_bytes());
    } catch (const ConfigError& e) {
      // Its first sentence: the key and what does not fit (the advice follows in `rondo plan`).
      row.refusal = e.what();
      row.refusal = row.refusal.substr(0, row.refusal.find(". "));
    }
    out.push_back(row);
  }
  return out;
}

std::string comparison_table(const std::vector<ScheduleComparison>& rows) {
  auto sorted = rows;
  std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    if (a.planned != b.planned) return a.planned;
    return a.planned && a.step_time_s < b.step_time_s;
  });
  std::string out =
      "| schedule | predicted step | bubble | largest rank memory | verdict |\n| --- | --- | --- | --- | --- "
      "|\n";
  char line[2048];
  for (const auto& r : sorted) {
    const std::string name =
        r.schedule +
        (r.virtual_stages > 1 && r.schedule != "zbv" ? " (v=" + std::to_string(r.virtual_stages) + ")" : "");
    if (r.planned) {
      std::snprintf(line, sizeof(line), "| %s | %.4g ms | %.1f%% | %.2f GB | planned |\n", name.c_str(),
                    r.step_time_s * 1e3, 100 * r.bubble_fraction, r.peak_bytes / 1e9);
    } else {
      std::snprintf(line, sizeof(line), "| %s | — | — | — | refused: %s |\n", name.c_str(),
                    r.refusal.c_str());
    }
    out += line;
  }
  return out;
}

}  // namespace rondo

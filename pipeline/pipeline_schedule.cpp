#include "pipeline/pipeline_schedule.h"

#include <algorithm>

#include "common/errors.h"

namespace rondo {

std::vector<StageLayers> partition_layers_evenly(int num_layers, int pp, int vpp) {
  const int stages = pp * vpp;
  if (stages < 1 || num_layers % stages != 0) {
    throw PlanError("cannot split " + std::to_string(num_layers) + " layers into " + std::to_string(stages) +
                    " equal stages");
  }
  const int per = num_layers / stages;
  std::vector<StageLayers> out(static_cast<size_t>(stages));
  for (int s = 0; s < stages; ++s) {
    auto& st = out[static_cast<size_t>(s)];
    st.index = s;
    st.first_layer = s * per;
    st.num_layers = per;
    st.has_embedding = s == 0;
    st.has_lm_head = s == stages - 1;
  }
  return out;
}

std::vector<int> stages_of_pipeline_rank(int pp_rank, int pp, int vpp) {
  std::vector<int> out;
  for (int v = 0; v < vpp; ++v) out.push_back(pp_rank + v * pp);
  return out;
}

const std::vector<std::string>& schedules_with_generator() {
  static const std::vector<std::string> names = {"gpipe", "1f1b"};
  return names;
}

std::vector<ComputeAction> generate_schedule(const std::string& schedule, int pp_rank, int pp,
                                             int microbatches) {
  std::vector<ComputeAction> out;
  const int m = microbatches, s = pp_rank;
  if (pp == 1) {
    for (int i = 0; i < m; ++i) {
      out.push_back({ComputeKind::kF, 0, i});
      out.push_back({ComputeKind::kB, 0, i});
    }
    return out;
  }
  if (schedule == "gpipe") {
    for (int i = 0; i < m; ++i) out.push_back({ComputeKind::kF, s, i});
    for (int i = 0; i < m; ++i) out.push_back({ComputeKind::kB, s, i});
    return out;
  }
  if (schedule == "1f1b") {
    // PipeDream-Flush: warm-up forwards, then one forward one backward, then cool-down.
    const int warmup = std::min(pp - s - 1, m);
    int f = 0, b = 0;
    for (; f < warmup; ++f) out.push_back({ComputeKind::kF, s, f});
    while (f < m) {
      out.push_back({ComputeKind::kF, s, f++});
      out.push_back({ComputeKind::kB, s, b++});
    }
    while (b < m) out.push_back({ComputeKind::kB, s, b++});
    return out;
  }
  std::string available;
  for (const auto& n : schedules_with_generator()) available += (available.empty() ? "" : ", ") + n;
  throw ConfigError("pipeline.schedule", "'" + schedule +
                                             "' has no generator for pipeline_model_parallel_size > 1 in "
                                             "this version (available: " +
                                             available + ")");
}

}  // namespace rondo

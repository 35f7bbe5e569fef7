#include "pipeline/exec/plan_schedule.h"

#include <algorithm>

#include "pipeline/transfer_lowering.h"
#include "proto/plan_names.h"

namespace rondo {

namespace {
constexpr int kAsyncIterations = 4;
}  // namespace

PipelineSchedule schedule_of_plan(const plan::Plan& plan) {
  PipelineSchedule s;
  s.name = name_of(plan.schedule());
  s.pp = static_cast<int>(plan.mesh().pp());
  s.num_stages = plan.stages_size();
  // Chunked pipeline training: the schedule's microbatches are the rows' chunks.
  const int chunks = std::max(1, plan.data().pipeline_chunk_lengths_size());
  s.microbatches = static_cast<int>(plan.training().num_microbatches()) * chunks;
  if (chunks > 1) s.chunk_groups = ChunkGroups::uniform(s.microbatches, chunks);
  s.virtual_stages = s.pp > 0 ? std::max(1, s.num_stages / s.pp) : 1;
  s.stateless_workers = plan.stateless_workers();
  s.num_backward_stages = plan.backward_stages_size();
  s.ranks.resize(static_cast<size_t>(s.pp));
  // An asynchronous plan's step is a window of a stream: the stream of kAsyncIterations steps.
  s.async = plan.asynchronous();
  s.iterations = s.async ? kAsyncIterations : 1;
  for (const auto& r : plan.ranks()) {
    const auto& c = r.coords();
    if (c.dp() != 0 || c.tp() != 0 || c.cp() != 0) continue;
    std::vector<WindowAction> window;
    for (const auto& a : r.actions()) {
      const ComputeAction action{ComputeKind::kF, static_cast<int>(a.stage()),
                                 static_cast<int>(a.microbatch())};
      switch (a.kind()) {
        case plan::ACTION_F:
          window.push_back({action, a.ahead()});
          break;
        case plan::ACTION_B:
          window.push_back({{ComputeKind::kB, action.stage, action.microbatch}, a.ahead()});
          break;
        case plan::ACTION_I:
          window.push_back({{ComputeKind::kI, action.stage, action.microbatch}, a.ahead()});
          s.split_backward = true;
          break;
        case plan::ACTION_W:
          window.push_back({{ComputeKind::kW, action.stage, action.microbatch}, a.ahead()});
          break;
        default:
          break;
      }
    }
    s.ranks[c.pp()] = s.async ? string_windows(window, s.microbatches, s.iterations) : [&] {
      std::vector<ComputeAction> out;
      for (const auto& w : window) out.push_back(w.action);
      return out;
    }();
  }
  return s;
}

}  // namespace rondo

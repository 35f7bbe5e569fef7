#include "pipeline/exec/plan_schedule.h"

#include <algorithm>

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
  s.chunk_group = std::max(1, plan.data().pipeline_chunk_lengths_size());
  s.microbatches = static_cast<int>(plan.training().num_microbatches()) * s.chunk_group;
  s.virtual_stages = s.pp > 0 ? std::max(1, s.num_stages / s.pp) : 1;
  s.stateless_workers = plan.stateless_workers();
  s.num_backward_stages = plan.backward_stages_size();
  s.ranks.resize(static_cast<size_t>(s.pp));
  // An asynchronous plan's step is a window of a stream: the stream of kAsyncIterations steps
  // (the warm-up, then the windows, the last without its ahead forwards).
  s.async = plan.asynchronous();
  s.iterations = s.async ? kAsyncIterations : 1;
  const int m = s.microbatches;
  for (const auto& r : plan.ranks()) {
    const auto& c = r.coords();
    if (c.dp() != 0 || c.tp() != 0 || c.cp() != 0) continue;
    auto& out = s.ranks[c.pp()];
    std::vector<std::pair<const plan::Action*, int>> stream;  // action, its microbatch in the stream
    for (const auto& a : r.actions()) {
      if (a.ahead()) stream.emplace_back(&a, static_cast<int>(a.microbatch()));
    }
    for (int k = 0; k < s.iterations; ++k) {
      for (const auto& a : r.actions()) {
        if (a.ahead() && k + 1 == s.iterations) continue;
        stream.emplace_back(&a, static_cast<int>(a.microbatch()) + (k + (a.ahead() ? 1 : 0)) * m);
      }
    }
    for (const auto& [action, mb] : stream) {
      const auto& a = *action;
      const int stage = static_cast<int>(a.stage());
      switch (a.kind()) {
        case plan::ACTION_F:
          out.push_back({ComputeKind::kF, stage, mb});
          break;
        case plan::ACTION_B:
          out.push_back({ComputeKind::kB, stage, mb});
          break;
        case plan::ACTION_I:
          out.push_back({ComputeKind::kI, stage, mb});
          s.split_backward = true;
          break;
        case plan::ACTION_W:
          out.push_back({ComputeKind::kW, stage, mb});
          break;
        default:
          break;
      }
    }
  }
  return s;
}

}  // namespace rondo

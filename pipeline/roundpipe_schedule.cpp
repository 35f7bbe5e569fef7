// RoundPipe-style schedules: stages are not bound to ranks. The forward and the backward have
// their own partitions; every (stage, microbatch) is a task, and tasks are dispatched
// round-robin over stateless workers in stage-major order, so each worker runs every stage in
// turn and no worker is pinned to the heavy LM head or embedding. A worker holds one stage's
// weights (plus the prefetched next) and one task's working set; boundary activations are
// offloaded between tasks, and each backward stage recomputes its forward from the checkpoint at
// its first layer (busy time, not bubble). Backward stage 0 holds the last layers and runs their
// forward and backward together, so they need no recomputation.
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <optional>
#include <tuple>

#include "common/errors.h"
#include "pipeline/pipeline_schedule.h"
#include "pipeline/roundpipe_schedule.h"

namespace rondo {

RoundPipePartition roundpipe_partition(const std::vector<double>& layers, int workers) {
  if (layers.empty()) throw ConfigError("--layer-costs", "roundpipe needs at least one layer");
  const double total = std::accumulate(layers.begin(), layers.end(), 0.0);
  // A task should take about what one worker's forward share of the model takes.
  const double target = total / std::max(1, workers);
  const int n = static_cast<int>(layers.size());
  RoundPipePartition part;
  // Backward stages from the end: each takes layers while forward + backward (3x forward) fits
  // the target, at least one layer. The first of them is the fused tail.
  int end = n;
  part.backward_bounds.push_back(end);
  while (end > 0) {
    int start = end - 1;
    double sum = layers[static_cast<size_t>(start)];
    while (start > 0 && 3 * (sum + layers[static_cast<size_t>(start) - 1]) <= target + 1e-12) {
      sum += layers[static_cast<size_t>(--start)];
    }
    part.backward_bounds.push_back(start);
    end = start;
  }
  // backward_bounds runs n, s0, s1, ..., 0: stage k covers [bounds[k+1], bounds[k]).
  const int tail_start = part.backward_bounds[1];
  if (tail_start > 0) {
    const double forward_work = std::accumulate(layers.begin(), layers.begin() + tail_start, 0.0);
    const int stages = std::clamp(static_cast<int>(std::lround(forward_work / target)), 1, tail_start);
    part.forward_bounds =
        partition_min_max(std::vector<double>(layers.begin(), layers.begin() + tail_start), stages);
  } else {
    part.forward_bounds = {0, 0};  // the whole model is the fused tail: one empty forward stage
  }
  auto sum = [&](int a, int b) { return std::accumulate(layers.begin() + a, layers.begin() + b, 0.0); };
  const double share_unit = total / std::max(1, workers);  // a 1F1B rank's share of the model
  for (size_t s = 0; s + 1 < part.forward_bounds.size(); ++s) {
    const double f = sum(part.forward_bounds[s], part.forward_bounds[s + 1]);
    part.costs.f.push_back(f);
    part.costs.w.push_back(0.0);
    part.forward_share.push_back(f / share_unit);
  }
  for (size_t k = 0; k + 1 < part.backward_bounds.size(); ++k) {
    const double f = sum(part.backward_bounds[k + 1], part.backward_bounds[k]);
    part.costs.b.push_back(3 * f);  // (re)computed forward + backward (2x forward)
    part.backward_share.push_back(f / share_unit);
  }
  return part;
}

PipelineSchedule roundpipe_schedule(const ScheduleRequest& req) {
  const int p = req.pp, m = req.microbatches;
  std::vector<double> layers = req.layer_costs;
  if (layers.empty()) {
    const double per_rank = req.costs.empty() ? 1.0 : req.costs.f.front() * req.virtual_stages;
    layers.assign(static_cast<size_t>(4 * p), per_rank / 4);
  }
  const auto part = roundpipe_partition(layers, p);
  PipelineSchedule s;
  s.name = "roundpipe";
  s.pp = p;
  s.microbatches = m;
  s.iterations = req.iterations;
  s.async = req.async;
  s.num_stages = static_cast<int>(part.costs.f.size());
  s.num_backward_stages = static_cast<int>(part.costs.b.size());
  s.stage_share = part.forward_share;
  s.backward_share = part.backward_share;
  s.stateless_workers = true;
  s.derived_costs = part.costs;
  s.derived_costs.p2p_latency = req.costs.p2p_latency;
  s.derived_costs.p2p_bandwidth = req.costs.p2p_bandwidth;
  s.derived_costs.p2p_bytes = req.costs.p2p_bytes;
  s.ranks.resize(static_cast<size_t>(p));
  // Stage-major tasks, dealt round-robin; the deal continues across iterations. Synchronous
  // iterations follow each other (the simulator holds each behind the previous one's weight
  // update). Asynchronous ones interleave the next iteration's forwards with this iteration's
  // backwards, one for one: with a one-step weight delay those forwards need no update, and they
  // fill the waits of the backward chain (the optimizer step is hidden).
  const auto forwards = [&](int it) {
    std::vector<ComputeAction> out;
    for (int st = 0; st < s.num_stages; ++st) {
      for (int j = 0; j < m; ++j) out.push_back({ComputeKind::kF, st, it * m + j});
    }
    return out;
  };
  const auto backwards = [&](int it) {
    std::vector<ComputeAction> out;
    for (int k = 0; k < s.num_backward_stages; ++k) {
      for (int j = 0; j < m; ++j) out.push_back({ComputeKind::kB, k, it * m + j});
    }
    return out;
  };
  std::vector<ComputeAction> order;
  for (int it = 0; it < req.iterations; ++it) {
    if (!req.async || it == 0) {
      const auto f = forwards(it);
      order.insert(order.end(), f.begin(), f.end());
    }
    const auto b = backwards(it);
    const auto next = req.async && it + 1 < req.iterations ? forwards(it + 1) : std::vector<ComputeAction>{};
    for (size_t i = 0; i < std::max(b.size(), next.size()); ++i) {
      if (i < b.size()) order.push_back(b[i]);
      if (i < next.size()) order.push_back(next[i]);
    }
  }
  // Dispatch in order, each task to the worker that frees first (ties in round-robin order):
  // a task waiting for its input holds one worker while the next, independent ones go to the
  // others. Transfers cost the link's time when producer and consumer workers differ.
  struct Done {
    int worker;
    double end;
  };
  const auto& c = s.derived_costs;
  const double transfer = c.transfer_time();
  std::map<std::tuple<int, int, int>, Done> done;  // (kind, stage, microbatch)
  std::vector<double> free_at(static_cast<size_t>(p), 0.0),
      iteration_end(static_cast<size_t>(req.iterations), 0.0);
  int next_worker = 0;
  for (const auto& a : order) {
    const int it = a.microbatch / m;
    double ready = !req.async && it > 0 ? iteration_end[static_cast<size_t>(it) - 1] : 0.0;
    const auto dep =
        a.kind == ComputeKind::kF
            ? (a.stage > 0 ? std::optional(std::tuple(0, a.stage - 1, a.microbatch)) : std::nullopt)
            : (a.stage > 0 ? std::tuple(1, a.stage - 1, a.microbatch)
                           : std::tuple(0, s.num_stages - 1, a.microbatch));
    int worker = next_worker;
    for (int i = 0; i < p; ++i) {
      const int w = (next_worker + i) % p;
      if (free_at[static_cast<size_t>(w)] < free_at[static_cast<size_t>(worker)]) worker = w;
    }
    double start = std::max(ready, free_at[static_cast<size_t>(worker)]);
    if (dep) {
      const Done& d = done.at(*dep);
      start = std::max(start, d.end + (d.worker == worker ? 0.0 : transfer));
    }
    const double duration =
        a.kind == ComputeKind::kF ? c.f[static_cast<size_t>(a.stage)] : c.b[static_cast<size_t>(a.stage)];
    free_at[static_cast<size_t>(worker)] = start + duration;
    done[{a.kind == ComputeKind::kF ? 0 : 1, a.stage, a.microbatch}] = {worker, start + duration};
    iteration_end[static_cast<size_t>(it)] =
        std::max(iteration_end[static_cast<size_t>(it)], start + duration);
    s.ranks[static_cast<size_t>(worker)].push_back(a);
    next_worker = (worker + 1) % p;
  }
  return s;
}

}  // namespace rondo

// RoundPipe-style schedules: stages are not bound to ranks. The forward and the backward have
// their own partitions; every (stage, microbatch) is a task, and tasks are dispatched over
// stateless workers in stage-major order (RoundPipe's rounds, or to the earliest free worker),
// so each worker runs every stage in turn and no worker is pinned to the heavy LM head or
// embedding. A worker holds one stage's weights (plus the prefetched next, see host_link.h) and
// one task's working set; boundary activations are offloaded between tasks, and each backward
// stage recomputes its forward from the checkpoint at its first layer (busy time, not bubble). Backward stage
// 0 holds the last layers and runs their forward and backward together, so they need no recomputation.
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <optional>
#include <tuple>

#include "common/errors.h"
#include "pipeline/host_link.h"
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
    // The recomputation starts from a stored checkpoint, so it may run before the gradient
    // arrives; the fused tail's forward needs the last forward stage's output.
    part.costs.b_lead.push_back(k == 0 ? 0.0 : f);
    part.backward_share.push_back(f / share_unit);
  }
  return part;
}

RoundPipePartition roundpipe_partition(const StagePartition& given, const StageCosts& costs, int workers) {
  RoundPipePartition part;
  const int layers = std::accumulate(given.forward.begin(), given.forward.end(), 0);
  const double share_unit = std::max(1.0, static_cast<double>(layers)) / std::max(1, workers);
  part.forward_bounds = {0};
  for (int n : given.forward) {
    part.forward_bounds.push_back(part.forward_bounds.back() + n);
    part.forward_share.push_back(n / share_unit);
  }
  part.backward_bounds = {layers};
  for (int n : given.backward) {
    part.backward_bounds.push_back(part.backward_bounds.back() - n);
    part.backward_share.push_back(n / share_unit);
  }
  part.costs = costs;
  return part;
}

namespace {

// Places tasks on workers in dispatch order and times them as the simulator will: a worker runs
// its tasks in order; a task starts when its worker is free, its input has arrived (a transfer
// when another worker produced it; a backward's lead may run before) and its stage's weights
// have crossed the worker's host link; a synchronous iteration waits for the previous one's end
// (its weight update).
class TaskPlacer {
 public:
  TaskPlacer(PipelineSchedule& s, const StageCosts& costs, bool barrier)
      : s_(s),
        costs_(costs),
        barrier_(barrier),
        host_(costs, s.pp),
        free_at_(static_cast<size_t>(s.pp), 0.0),
        iteration_end_(static_cast<size_t>(s.iterations), 0.0) {}

  double free_at(int worker) const { return free_at_[static_cast<size_t>(worker)]; }
  // The worker that frees first (ties: the first one from `from` on).
  int earliest_free(int from) const {
    int best = from;
    for (int i = 0; i < s_.pp; ++i) {
      const int w = (from + i) % s_.pp;
      if (free_at(w) < free_at(best)) best = w;
    }
    return best;
  }

  void place(const ComputeAction& a, int worker) {
    const int it = a.microbatch / s_.microbatches;
    const bool forward = a.kind == ComputeKind::kF;
    const size_t st = static_cast<size_t>(a.stage);
    double inputs = barrier_ && it > 0 ? iteration_end_[static_cast<size_t>(it) - 1] : 0.0;
    if (!forward || a.stage > 0) {
      const auto dep = forward || a.stage > 0 ? std::tuple(forward ? 0 : 1, a.stage - 1, a.microbatch)
                                              : std::tuple(0, s_.num_stages - 1, a.microbatch);
      const Done& d = done_.at(dep);
      inputs = std::max(inputs, d.end + (d.worker == worker ? 0.0 : costs_.transfer_time()));
    }
    const double lead = forward ? 0.0 : costs_.lead(a.stage);
    const double start = host_.start(worker, a, std::max(free_at(worker), inputs - lead));
    const double end = start + (forward ? costs_.f[st] : costs_.b[st]);
    host_.finish(worker, end);
    free_at_[static_cast<size_t>(worker)] = end;
    done_[{forward ? 0 : 1, a.stage, a.microbatch}] = {worker, end};
    iteration_end_[static_cast<size_t>(it)] = std::max(iteration_end_[static_cast<size_t>(it)], end);
    s_.ranks[static_cast<size_t>(worker)].push_back(a);
  }

 private:
  struct Done {
    int worker;
    double end;
  };
  PipelineSchedule& s_;
  const StageCosts& costs_;
  const bool barrier_;
  HostLink host_;
  std::vector<double> free_at_, iteration_end_;
  std::map<std::tuple<int, int, int>, Done> done_;  // (0 forward | 1 backward, stage, microbatch)
};

// RoundPipe's dispatch (see ScheduleRequest::roundpipe_dispatch).
void dispatch_in_rounds(PipelineSchedule& s, TaskPlacer& placer) {
  const int p = s.pp, m = s.microbatches;
  int first_worker = 0;
  for (int it = 0; it < s.iterations; ++it) {
    for (int round = 0; round < m; round += p) {
      const int end = std::min(round + p, m);
      for (int st = 0; st < s.num_stages; ++st) {
        for (int j = round; j < end; ++j)
          placer.place({ComputeKind::kF, st, it * m + j}, (first_worker + st) % p);
      }
      for (int k = 0; k < s.num_backward_stages; ++k) {
        for (int j = round; j < end; ++j) {
          placer.place({ComputeKind::kB, k, it * m + j}, (first_worker + s.num_stages + k) % p);
        }
      }
      first_worker = placer.earliest_free(0);
    }
  }
}

// Each task, in stage-major order, to the worker that frees first (ties in round-robin order):
// a task waiting for its input holds one worker while the next, independent ones go to the
// others. Asynchronous iterations interleave the next iteration's forwards with this
// iteration's backwards, one for one: with a one-step weight delay those forwards need no
// update, and they fill the waits of the backward chain (the optimizer step is hidden).
void dispatch_to_earliest_free(PipelineSchedule& s, TaskPlacer& placer) {
  const int m = s.microbatches;
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
  for (int it = 0; it < s.iterations; ++it) {
    if (!s.async || it == 0) {
      const auto f = forwards(it);
      order.insert(order.end(), f.begin(), f.end());
    }
    const auto b = backwards(it);
    const auto next = s.async && it + 1 < s.iterations ? forwards(it + 1) : std::vector<ComputeAction>{};
    for (size_t i = 0; i < std::max(b.size(), next.size()); ++i) {
      if (i < b.size()) order.push_back(b[i]);
      if (i < next.size()) order.push_back(next[i]);
    }
  }
  int next_worker = 0;
  for (const auto& a : order) {
    const int worker = placer.earliest_free(next_worker);
    placer.place(a, worker);
    next_worker = (worker + 1) % s.pp;
  }
}

}  // namespace

PipelineSchedule roundpipe_schedule(const ScheduleRequest& req) {
  const int p = req.pp, m = req.microbatches;
  RoundPipePartition part;
  if (req.partition.separate_backward()) {
    part = roundpipe_partition(req.partition, req.costs, p);
  } else {
    if (!req.partition.forward.empty()) {
      throw ConfigError("--stage-partition",
                        "roundpipe takes FORWARD|BACKWARD partitions (e.g. 5,5,6|0,4,4,4,4)");
    }
    std::vector<double> layers = req.layer_costs;
    if (layers.empty()) {
      const double per_rank = req.costs.empty() ? 1.0 : req.costs.f.front() * req.virtual_stages;
      layers.assign(static_cast<size_t>(4 * p), per_rank / 4);
    }
    part = roundpipe_partition(layers, p);
  }
  if (part.costs.f.size() + 1 != part.forward_bounds.size() ||
      part.costs.b.size() + 1 != part.backward_bounds.size()) {
    throw PlanError("roundpipe: the costs do not cover the partition's stages");
  }
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
  s.derived_costs.host_bandwidth = req.costs.host_bandwidth;
  s.derived_costs.forward_weight_bytes = req.costs.forward_weight_bytes;
  s.derived_costs.backward_weight_bytes = req.costs.backward_weight_bytes;
  s.ranks.resize(static_cast<size_t>(p));
  TaskPlacer placer(s, s.derived_costs, !req.async);
  if (req.roundpipe_dispatch == "rounds") {
    dispatch_in_rounds(s, placer);
  } else if (req.roundpipe_dispatch == "earliest_free") {
    dispatch_to_earliest_free(s, placer);
  } else {
    throw ConfigError("pipeline.roundpipe_dispatch",
                      "'" + req.roundpipe_dispatch + "' is not one of: rounds, earliest_free");
  }
  return s;
}

}  // namespace rondo

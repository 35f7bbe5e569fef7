#include "pipeline/schedule_simulator.h"

#include <algorithm>
#include <deque>
#include <unordered_map>

#include "common/errors.h"

namespace rondo {
namespace {

// Ops are identified by (kind, stage, microbatch); B and I share the "backward done" role.
uint64_t key(ComputeKind kind, int stage, int mb) {
  return (static_cast<uint64_t>(kind) << 58) | (static_cast<uint64_t>(stage) << 32) |
         static_cast<uint32_t>(mb);
}

struct Done {
  int rank;
  double end;
};

}  // namespace

SimulationResult simulate_schedule(const PipelineSchedule& s, const StageCosts& costs) {
  const int p = static_cast<int>(s.ranks.size());
  const auto us = [](int x) { return static_cast<size_t>(x); };
  if (costs.num_stages() < s.num_stages) {
    throw PlanError("costs cover " + std::to_string(costs.num_stages()) + " stages, the schedule has " +
                    std::to_string(s.num_stages));
  }
  SimulationResult out;
  out.busy.assign(us(p), 0);
  out.peak_activations.assign(us(p), 0);
  out.exposed_comm_per_rank.assign(us(p), 0);
  out.timeline.resize(us(p));

  std::unordered_map<uint64_t, Done> done;
  done.reserve(s.num_actions() * 2);
  std::unordered_map<uint64_t, std::vector<int>> waiters;
  std::vector<size_t> pos(us(p), 0);
  std::vector<double> rank_end(us(p), 0), current(us(p), 0);
  std::deque<int> work;
  for (int r = 0; r < p; ++r) work.push_back(r);
  const double transfer = costs.transfer_time();
  const ComputeKind backward_kind = s.split_backward ? ComputeKind::kI : ComputeKind::kB;
  size_t executed = 0;

  while (!work.empty()) {
    const int r = work.front();
    work.pop_front();
    auto& actions = s.ranks[us(r)];
    while (pos[us(r)] < actions.size()) {
      const ComputeAction& a = actions[pos[us(r)]];
      // The ops this one needs: (kind, stage, microbatch) of each dependency.
      std::vector<uint64_t> deps;
      switch (a.kind) {
        case ComputeKind::kF:
          if (a.stage > 0) deps.push_back(key(ComputeKind::kF, a.stage - 1, a.microbatch));
          break;
        case ComputeKind::kB:
        case ComputeKind::kI:
          deps.push_back(key(ComputeKind::kF, a.stage, a.microbatch));
          if (a.stage < s.num_stages - 1) deps.push_back(key(backward_kind, a.stage + 1, a.microbatch));
          break;
        case ComputeKind::kW:
          deps.push_back(key(ComputeKind::kI, a.stage, a.microbatch));
          break;
      }
      double ready = rank_end[us(r)], ready_without_comm = rank_end[us(r)];
      bool blocked = false;
      for (uint64_t d : deps) {
        auto it = done.find(d);
        if (it == done.end()) {
          waiters[d].push_back(r);
          blocked = true;
          break;
        }
        const double arrival = it->second.end + (it->second.rank == r ? 0.0 : transfer);
        ready = std::max(ready, arrival);
        ready_without_comm = std::max(ready_without_comm, it->second.end);
      }
      if (blocked) break;
      const size_t st = us(a.stage);
      const double duration = a.kind == ComputeKind::kF   ? costs.f[st]
                              : a.kind == ComputeKind::kB ? costs.b[st]
                              : a.kind == ComputeKind::kI ? costs.i(a.stage)
                                                          : costs.w[st];
      TimedAction t{a, ready, ready + duration, ready - ready_without_comm};
      out.timeline[us(r)].push_back(t);
      out.busy[us(r)] += duration;
      out.exposed_comm_per_rank[us(r)] += t.comm_wait;
      const double share = st < s.stage_share.size() ? s.stage_share[st] : 1.0;
      if (a.kind == ComputeKind::kF) {
        current[us(r)] += share;
        out.peak_activations[us(r)] = std::max(out.peak_activations[us(r)], current[us(r)]);
      } else if (a.kind == ComputeKind::kB) {
        current[us(r)] -= share;
      } else if (a.kind == ComputeKind::kI) {
        current[us(r)] -= share * (1.0 - s.weight_grad_memory);
      } else {
        current[us(r)] -= share * s.weight_grad_memory;
      }
      rank_end[us(r)] = t.end;
      const uint64_t k = key(a.kind, a.stage, a.microbatch);
      done[k] = {r, t.end};
      if (auto w = waiters.find(k); w != waiters.end()) {
        for (int q : w->second) work.push_back(q);
        waiters.erase(w);
      }
      ++pos[us(r)];
      ++executed;
    }
  }

  if (executed != s.num_actions()) {
    std::string why;
    for (int r = 0; r < p && why.size() < 400; ++r) {
      if (pos[us(r)] < s.ranks[us(r)].size()) {
        why += (why.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) + " waits at " +
               to_string(s.ranks[us(r)][pos[us(r)]]);
      }
    }
    throw PlanError("schedule " + s.name + " deadlocks: " + why);
  }
  for (int r = 0; r < p; ++r) out.makespan = std::max(out.makespan, rank_end[us(r)]);
  double busy = 0;
  for (double b : out.busy) busy += b;
  for (double e : out.exposed_comm_per_rank) out.exposed_comm += e;
  out.bubble_fraction = out.makespan > 0 ? 1.0 - busy / (out.makespan * p) : 0.0;
  return out;
}

double steady_state_bubble(const PipelineSchedule& s, const SimulationResult& r) {
  if (s.iterations <= 1) return r.bubble_fraction;
  std::vector<double> iteration_end(static_cast<size_t>(s.iterations), 0.0);
  for (const auto& rank : r.timeline) {
    for (const auto& t : rank) {
      auto& e = iteration_end[static_cast<size_t>(t.action.microbatch / s.microbatches)];
      e = std::max(e, t.end);
    }
  }
  const double period = (iteration_end.back() - iteration_end.front()) / (s.iterations - 1);
  double busy = 0;
  for (double b : r.busy) busy += b;
  const double busy_per_iteration = busy / s.iterations;
  return period > 0 ? 1.0 - busy_per_iteration / (period * static_cast<double>(r.busy.size())) : 0.0;
}

}  // namespace rondo

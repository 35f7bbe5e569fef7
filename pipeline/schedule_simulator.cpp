#include "pipeline/schedule_simulator.h"

#include <algorithm>
#include <cstdint>
#include <deque>
#include <unordered_map>

#include "common/errors.h"
#include "pipeline/host_link.h"

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

void check_costs(const PipelineSchedule& s, const StageCosts& costs) {
  if (costs.num_stages() < s.num_stages) {
    throw PlanError("costs cover " + std::to_string(costs.num_stages()) + " stages, the schedule has " +
                    std::to_string(s.num_stages));
  }
  if (static_cast<int>(costs.b.size()) < std::max(s.num_stages, s.num_backward_stages)) {
    throw PlanError("costs give " + std::to_string(costs.b.size()) +
                    " backward durations, the schedule has " +
                    std::to_string(std::max(s.num_stages, s.num_backward_stages)) + " backward stages");
  }
}

double duration_of(const ComputeAction& a, const StageCosts& costs) {
  const auto st = static_cast<size_t>(a.stage);
  return a.kind == ComputeKind::kF   ? costs.f[st]
         : a.kind == ComputeKind::kB ? costs.b[st]
         : a.kind == ComputeKind::kI ? costs.i(a.stage)
                                     : costs.w[st];
}

// A rank's activations in flight after `a` (`current`, in microbatches of its share) and their
// peak: a forward adds its stage's share, a backward frees it (I all but what W needs, W the
// rest); a stateless worker keeps only the running task's working set.
void track_activations(const PipelineSchedule& s, const ComputeAction& a, double& current, double& peak) {
  const auto st = static_cast<size_t>(a.stage);
  const auto& shares =
      s.num_backward_stages > 0 && a.kind == ComputeKind::kB ? s.backward_share : s.stage_share;
  const double share = st < shares.size() ? shares[st] : 1.0;
  if (s.stateless_workers) {
    peak = std::max(peak, share);
  } else if (a.kind == ComputeKind::kF) {
    current += share;
    peak = std::max(peak, current);
  } else if (a.kind == ComputeKind::kB) {
    current -= share;
  } else if (a.kind == ComputeKind::kI) {
    current -= share * (1.0 - s.weight_grad_memory);
  } else {
    current -= share * s.weight_grad_memory;
  }
}

// Records `k` as done and wakes the ranks waiting for it.
void mark_done(uint64_t k, Done entry, std::unordered_map<uint64_t, Done>& done,
               std::unordered_map<uint64_t, std::vector<int>>& waiters, std::deque<int>& work) {
  done[k] = entry;
  if (auto w = waiters.find(k); w != waiters.end()) {
    for (int q : w->second) work.push_back(q);
    waiters.erase(w);
  }
}

// The makespan (stateless workers: until their last gradients went home), the exposed
// communication and the bubble, from each rank's end and busy time.
void summarize(const PipelineSchedule& s, const std::vector<double>& rank_end, HostLink& host,
               SimulationResult& out) {
  const int p = static_cast<int>(s.ranks.size());
  for (int r = 0; r < p; ++r) {
    out.makespan = std::max(out.makespan, rank_end[static_cast<size_t>(r)]);
    if (s.stateless_workers) out.makespan = std::max(out.makespan, host.drained(r));
  }
  double busy = 0;
  for (double b : out.busy) busy += b;
  for (double e : out.exposed_comm_per_rank) out.exposed_comm += e;
  out.exposed_host_transfer = host.exposed();
  out.bubble_fraction = out.makespan > 0 ? 1.0 - busy / (out.makespan * p) : 0.0;
}

PlanError deadlock(const PipelineSchedule& s, const std::vector<size_t>& pos) {
  std::string why;
  for (size_t r = 0; r < s.ranks.size() && why.size() < 400; ++r) {
    if (pos[r] < s.ranks[r].size()) {
      why += (why.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) + " waits at " +
             to_string(s.ranks[r][pos[r]]);
    }
  }
  return PlanError("schedule " + s.name + " deadlocks: " + why);
}

}  // namespace

SimulationResult simulate_schedule(const PipelineSchedule& s, const StageCosts& costs) {
  const int p = static_cast<int>(s.ranks.size());
  const auto us = [](int x) { return static_cast<size_t>(x); };
  check_costs(s, costs);
  SimulationResult out;
  out.busy = out.peak_activations = out.exposed_comm_per_rank = std::vector<double>(us(p), 0.0);
  out.timeline.resize(us(p));

  std::unordered_map<uint64_t, Done> done;
  done.reserve(s.num_actions() * 2);
  std::unordered_map<uint64_t, std::vector<int>> waiters;
  std::vector<size_t> pos(us(p), 0);
  std::vector<double> rank_end(us(p), 0), current(us(p), 0);
  std::deque<int> work;
  for (int r = 0; r < p; ++r) work.push_back(r);
  const double transfer = costs.transfer_time();
  size_t executed = 0;
  const bool barrier = s.stateless_workers && !s.async && s.iterations > 1;
  const size_t per_iteration = s.num_actions() / static_cast<size_t>(std::max(1, s.iterations));
  HostLink host(costs, s.stateless_workers ? p : 0);  // weights of stateless workers
  std::vector<size_t> done_in_iteration(us(std::max(1, s.iterations)), 0);
  std::vector<double> iteration_end(us(std::max(1, s.iterations)), 0.0);
  auto iteration_key = [](int it) { return key(ComputeKind::kW, (1 << 25) + it, 0); };

  while (!work.empty()) {
    const int r = work.front();
    work.pop_front();
    auto& actions = s.ranks[us(r)];
    while (pos[us(r)] < actions.size()) {
      const ComputeAction& a = actions[pos[us(r)]];
      std::vector<uint64_t> deps;
      for (const auto& in : action_inputs(s, a)) deps.push_back(key(in.kind, in.stage, in.microbatch));
      // A synchronous schedule over stateless workers updates every weight between iterations:
      // iteration k starts when iteration k-1 has finished everywhere.
      const int iteration = a.microbatch / std::max(1, s.microbatches);
      if (barrier && iteration > 0) deps.push_back(iteration_key(iteration - 1));
      // A backward's lead (recomputation, a fused head's forward) runs before its inputs arrive.
      const double lead = a.kind == ComputeKind::kB ? costs.lead(a.stage) : 0.0;
      double inputs = 0, inputs_without_comm = 0, hops = 0;
      bool blocked = false;
      for (uint64_t d : deps) {
        auto it = done.find(d);
        if (it == done.end()) {
          waiters[d].push_back(r);
          blocked = true;
          break;
        }
        const bool local = it->second.rank == r || it->second.rank < 0;  // < 0: an iteration barrier
        hops += local ? 0.0 : transfer;
        inputs = std::max(inputs, it->second.end + (local ? 0.0 : transfer));
        inputs_without_comm = std::max(inputs_without_comm, it->second.end);
      }
      if (blocked) break;
      out.comm_total += hops;
      double ready = std::max(rank_end[us(r)], inputs - lead);
      const double ready_without_comm = std::max(rank_end[us(r)], inputs_without_comm - lead);
      if (s.stateless_workers) ready = host.start(r, a, ready);
      const double duration = duration_of(a, costs);
      TimedAction t{a, ready, ready + duration, ready - ready_without_comm};
      out.timeline[us(r)].push_back(t);
      out.busy[us(r)] += duration;
      out.exposed_comm_per_rank[us(r)] += t.comm_wait;
      track_activations(s, a, current[us(r)], out.peak_activations[us(r)]);
      rank_end[us(r)] = t.end;
      if (s.stateless_workers) host.finish(r, t.end);
      mark_done(key(a.kind, a.stage, a.microbatch), {r, t.end}, done, waiters, work);
      ++pos[us(r)];
      ++executed;
      if (barrier) {
        iteration_end[us(iteration)] = std::max(iteration_end[us(iteration)], t.end);
        if (++done_in_iteration[us(iteration)] == per_iteration)
          mark_done(iteration_key(iteration), {-1, iteration_end[us(iteration)]}, done, waiters, work);
      }
    }
  }

  if (executed != s.num_actions()) throw deadlock(s, pos);
  summarize(s, rank_end, host, out);
  return out;
}

namespace {

// The steady-state window [w0, w1): from the end of the first iteration to the end of the
// second-to-last (the last, with two), and how many iterations it spans.
struct SteadyWindow {
  double w0 = 0, w1 = 0;
  int iterations = 0;
};

SteadyWindow steady_window(const PipelineSchedule& s, const SimulationResult& r) {
  std::vector<double> iteration_end(static_cast<size_t>(s.iterations), 0.0);
  for (const auto& rank : r.timeline) {
    for (const auto& t : rank) {
      auto& e = iteration_end[static_cast<size_t>(t.action.microbatch / s.microbatches)];
      e = std::max(e, t.end);
    }
  }
  const int last = s.iterations >= 3 ? s.iterations - 2 : s.iterations - 1;
  return {iteration_end.front(), iteration_end[static_cast<size_t>(last)], last};
}

}  // namespace

double steady_state_iteration_time(const PipelineSchedule& s, const SimulationResult& r) {
  if (s.iterations <= 1) return r.makespan;
  const auto w = steady_window(s, r);
  return w.w1 > w.w0 ? (w.w1 - w.w0) / w.iterations : r.makespan / s.iterations;
}

double steady_state_bubble(const PipelineSchedule& s, const SimulationResult& r) {
  if (s.iterations <= 1) return r.bubble_fraction;
  // Utilisation inside a window that leaves out the first iteration's fill and, with three or
  // more iterations, the last one's drain.
  const auto [w0, w1, spanned] = steady_window(s, r);
  if (w1 <= w0 || spanned < 1) return r.bubble_fraction;
  double busy = 0;
  for (const auto& rank : r.timeline) {
    for (const auto& t : rank) busy += std::max(0.0, std::min(t.end, w1) - std::max(t.start, w0));
  }
  return std::max(0.0, 1.0 - busy / ((w1 - w0) * static_cast<double>(r.timeline.size())));
}

BubbleBreakdown bubble_breakdown(const PipelineSchedule& s, const StageCosts& costs,
                                 const SimulationResult& result) {
  BubbleBreakdown out;
  const int p = static_cast<int>(result.timeline.size());
  const bool warmup_phase = s.num_backward_stages == 0;
  double busy_total = 0;
  for (int r = 0; r < p; ++r) {
    std::vector<TimedAction> ops;
    for (const auto& t : result.timeline[static_cast<size_t>(r)]) {
      if (t.end > t.start) ops.push_back(t);  // an empty stage's ops take no time and count for nothing
    }
    for (const auto& t : ops) busy_total += t.end - t.start;
    if (ops.empty()) continue;
    out.fill += ops.front().start;
    // Forward work ends: forwards, and the fused head's forward leading RoundPipe's backward stage 0.
    // Backward work: B, I, W; a backward proper starts after its lead.
    std::vector<double> forward_ends;
    double first_backward = -1, last_backward = -1;
    for (const auto& t : ops) {
      const auto& a = t.action;
      const double lead = a.kind == ComputeKind::kB ? costs.lead(a.stage) : 0.0;
      if (a.kind == ComputeKind::kF) forward_ends.push_back(t.end);
      if (a.kind == ComputeKind::kB && s.num_backward_stages > 0 && a.stage == 0 && lead > 0) {
        forward_ends.push_back(t.start + lead);
      }
      if (a.kind != ComputeKind::kF && t.end - t.start > lead) {
        if (first_backward < 0) first_backward = t.start + lead;
        last_backward = t.end;
      }
    }
    out.drain += result.makespan - (last_backward >= 0 ? last_backward : ops.back().end);
    if (first_backward < 0) continue;
    std::sort(forward_ends.begin(), forward_ends.end());
    forward_ends.erase(std::upper_bound(forward_ends.begin(), forward_ends.end(), first_backward),
                       forward_ends.end());
    if (forward_ends.empty()) continue;
    const size_t warmup = warmup_phase ? std::min(static_cast<size_t>(p - r), forward_ends.size()) : 0;
    const double from = warmup > 0 ? forward_ends[warmup - 1] : forward_ends.back();
    double busy = 0;
    for (const auto& t : ops)
      busy += std::max(0.0, std::min(t.end, first_backward) - std::max(t.start, from));
    out.phase_switch += std::max(0.0, first_backward - from - busy);
  }
  const double bubble = std::max(0.0, result.makespan * p - busy_total);
  out.intra = std::max(0.0, bubble - out.fill - out.phase_switch - out.drain);
  return out;
}

}  // namespace rondo

// Synthetic step reports for the fault detector's tests: a ring allreduce per step whose members
// enter at chosen times and whose links take chosen times per byte, simulated exchange by exchange
// the way comms/collectives.cpp's ring runs (a rank posts step k once its step k-1 completed; a
// transfer moves once both sides posted it).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "proto/report.pb.h"

namespace rondo::synthetic {

inline constexpr int64_t kSecond = 1'000'000'000;
inline constexpr uint64_t kBlock = 1 << 20;

struct RingStep {
  int n = 4;
  std::vector<double> enter_s;                   // per rank, from the step's start
  std::map<std::pair<int, int>, double> link_s;  // per directed link: seconds per block (default 0.002)
  std::map<int, double> stalled_s;               // per rank: its second receive completes this much later
  double step_time_s = 1.0;
};

// One step's reports (one per rank): a ring allreduce of group "dp@0" numbered `seq`. Each rank
// enters it enter_s after `ends` (its previous collective's end, updated; null: the step's start).
inline std::vector<report::StepReport> ring_reports(int64_t step, uint64_t seq, const RingStep& spec,
                                                    int attempt = 0, std::vector<int64_t>* ends = nullptr) {
  const int n = spec.n;
  const int64_t base = step * 10 * kSecond;
  std::vector<report::StepReport> out(static_cast<size_t>(n));
  std::vector<report::CollectiveRecord*> rec(static_cast<size_t>(n));
  std::vector<int64_t> ready(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) {
    auto& rep = out[static_cast<size_t>(r)];
    rep.set_rank(r);
    rep.set_attempt(attempt);
    rep.set_step(step);
    rep.set_step_time_s(spec.step_time_s);
    auto* c = rec[static_cast<size_t>(r)] = rep.add_collectives();
    c->set_group("dp@0");
    c->set_group_seq(seq);
    c->set_op("allreduce");
    c->set_group_size(n);
    c->set_completed(true);
    const int64_t from = ends ? (*ends)[static_cast<size_t>(r)] : base;
    ready[static_cast<size_t>(r)] = from + static_cast<int64_t>(spec.enter_s[static_cast<size_t>(r)] * 1e9);
    c->set_enter_ns(ready[static_cast<size_t>(r)]);
  }
  for (int k = 0; k < 2 * (n - 1); ++k) {
    std::vector<int64_t> recv(static_cast<size_t>(n));
    for (int r = 0; r < n; ++r) {
      const int prev = (r + n - 1) % n;
      const auto it = spec.link_s.find({prev, r});
      const double d = it == spec.link_s.end() ? 0.002 : it->second;
      const auto stall = spec.stalled_s.find(r);
      const double stalled = stall != spec.stalled_s.end() && k == 1 ? stall->second : 0.0;
      recv[static_cast<size_t>(r)] =
          std::max(ready[static_cast<size_t>(r)], ready[static_cast<size_t>(prev)]) +
          static_cast<int64_t>((d + stalled) * 1e9);
    }
    for (int r = 0; r < n; ++r) {
      const int next = (r + 1) % n, prev = (r + n - 1) % n;
      auto* e = rec[static_cast<size_t>(r)]->add_exchanges();
      e->set_send_peer(next);
      e->set_recv_peer(prev);
      e->set_bytes(kBlock);
      e->set_posted_ns(ready[static_cast<size_t>(r)]);
      e->set_recv_ns(recv[static_cast<size_t>(r)]);
      e->set_done_ns(recv[static_cast<size_t>(r)]);  // sends are buffered (eager): done once received
    }
    for (int r = 0; r < n; ++r) {
      ready[static_cast<size_t>(r)] = rec[static_cast<size_t>(r)]->exchanges(k).done_ns();
    }
  }
  for (int r = 0; r < n; ++r) {
    rec[static_cast<size_t>(r)]->set_end_ns(ready[static_cast<size_t>(r)]);
    if (ends) (*ends)[static_cast<size_t>(r)] = ready[static_cast<size_t>(r)];
  }
  return out;
}

inline RingStep clean(int n = 4) {
  RingStep s;
  s.n = n;
  s.enter_s.assign(static_cast<size_t>(n), 0.5);
  return s;
}

}  // namespace rondo::synthetic

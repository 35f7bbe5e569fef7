#include "parallelism/moe_pipeline_sim.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace rondo {

namespace {

// The link as a fluid: each transfer becomes ready after its alpha and then needs `work` seconds of
// the whole bandwidth; the ready, unfinished transfers share it equally.
class FluidLink {
 public:
  // A transfer started at `at` (no earlier than the link's clock): its index.
  size_t start(double at, double alpha, double work) {
    advance(at);
    transfers_.push_back({at + alpha, work, work <= 0 ? at + alpha : -1.0});
    return transfers_.size() - 1;
  }
  // When transfer `i` completes (the link runs on alone until then: nothing starts meanwhile).
  double done(size_t i) {
    while (transfers_[i].done < 0) step(std::numeric_limits<double>::infinity());
    return transfers_[i].done;
  }

 private:
  struct Transfer {
    double ready, remaining, done;
  };

  void advance(double to) {
    while (now_ < to) {
      if (!step(to)) now_ = to;
    }
  }
  // One event: the next transfer becoming ready or finishing, or `limit`; false when nothing is in
  // flight before `limit`.
  bool step(double limit) {
    std::vector<size_t> sharing;
    double next_ready = std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < transfers_.size(); ++i) {
      auto& t = transfers_[i];
      if (t.done >= 0) continue;
      if (t.ready <= now_) {
        sharing.push_back(i);
      } else {
        next_ready = std::min(next_ready, t.ready);
      }
    }
    if (sharing.empty()) {
      if (next_ready == std::numeric_limits<double>::infinity() || next_ready > limit) return false;
      now_ = next_ready;
      return true;
    }
    const double share = static_cast<double>(sharing.size());
    double first_finish = std::numeric_limits<double>::infinity();
    for (size_t i : sharing) first_finish = std::min(first_finish, now_ + transfers_[i].remaining * share);
    const double until = std::min({first_finish, next_ready, limit});
    for (size_t i : sharing) {
      auto& t = transfers_[i];
      if (now_ + t.remaining * share <= until) {
        t.remaining = 0;
        t.done = until;
      } else {
        t.remaining -= (until - now_) / share;
      }
    }
    now_ = until;
    return true;
  }

  double now_ = 0;
  std::vector<Transfer> transfers_;
};

}  // namespace

double simulate_expert_pipeline(const MoeCosts& costs, const MoeLayerWork& w, int degree, bool backward,
                                int atoms) {
  if (atoms <= 0) atoms = degree;
  if (degree < 1 || atoms % degree != 0)
    throw std::invalid_argument("simulate_expert_pipeline: " + std::to_string(atoms) +
                                " atoms are not a multiple of degree " + std::to_string(degree));
  const double d = degree, calls = static_cast<double>(atoms) / d;
  const double off_rank = w.members > 1 ? static_cast<double>(w.members - 1) / w.members : 0.0;
  const double bytes = w.rows * static_cast<double>(w.hidden) * 4.0 * off_rank / d;
  const bool exchanges = w.members > 1;
  const double flops = 4.0 * (w.rows / d / calls / static_cast<double>(w.local_experts)) *
                       static_cast<double>(w.hidden) * static_cast<double>(w.ffn);
  const double per_call = backward ? costs.expert_backward.at(flops) : costs.expert.at(flops);
  const double compute = static_cast<double>(w.local_experts) * calls * per_call;

  FluidLink link;
  const auto transfer = [&](double at) {
    return link.start(at, costs.alltoall.alpha_s, costs.alltoall.beta_s * bytes);
  };
  if (!exchanges) return d * compute;
  double t = 0;
  size_t in = transfer(t), out = 0;
  for (int c = 0; c < degree; ++c) {
    t = std::max(t, link.done(in));
    if (c + 1 < degree) in = transfer(t);
    t += compute;
    if (c > 0) t = std::max(t, link.done(out));
    out = transfer(t);
  }
  return std::max(t, link.done(out));
}

double simulate_degree_pair(const MoeCosts& costs, const MoeLayerWork& work, int forward, int backward) {
  const int atoms = std::lcm(forward, backward);
  return simulate_expert_pipeline(costs, work, forward, false, atoms) +
         simulate_expert_pipeline(costs, work, backward, true, atoms);
}

SimulatedDegrees best_simulated_degrees(const MoeCosts& costs, const MoeLayerWork& work, int max_degree) {
  SimulatedDegrees best;
  best.seconds = std::numeric_limits<double>::infinity();
  for (int f = 1; f <= max_degree; ++f) {
    for (int b = 1; b <= max_degree; ++b) {
      const double s = simulate_degree_pair(costs, work, f, b);
      if (s < best.seconds) best = {f, b, s};
    }
  }
  return best;
}

}  // namespace rondo

#include "parallelism/hdp_planner.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <tuple>

#include "common/errors.h"
#include "parallelism/hdp_megatron.h"
#include "parallelism/rank_timelines.h"

namespace rondo {

HdpPolicy hdp_policy_from_name(const std::string& name) {
  if (name == "static") return HdpPolicy::kStatic;
  if (name == "megatron") return HdpPolicy::kMegatron;
  if (name == "rondo") return HdpPolicy::kRondo;
  throw ConfigError("parallel.hdp_policy", "'" + name + "' is not one of: static, megatron, rondo");
}

const char* hdp_policy_name(HdpPolicy policy) {
  switch (policy) {
    case HdpPolicy::kStatic:
      return "static";
    case HdpPolicy::kMegatron:
      return "megatron";
    case HdpPolicy::kRondo:
      break;
  }
  return "rondo";
}

double HdpPlan::busy_max_over_mean() const {
  if (busy_s.empty()) return 1.0;
  const double mean = std::accumulate(busy_s.begin(), busy_s.end(), 0.0) / static_cast<double>(busy_s.size());
  return mean > 0 ? *std::max_element(busy_s.begin(), busy_s.end()) / mean : 1.0;
}

std::map<int64_t, int64_t> HdpPlan::degree_histogram() const {
  std::map<int64_t, int64_t> h;
  for (const auto& p : placements) ++h[static_cast<int64_t>(p.ranks.size())];
  return h;
}

int64_t hdp_min_degree(int64_t tokens, const HdpOptions& o) {
  const int64_t d = (tokens + o.max_tokens_per_rank - 1) / o.max_tokens_per_rank;
  if (d > o.ranks)
    throw ConfigError("parallel.max_tokens_per_rank",
                      "a sequence of " + std::to_string(tokens) + " tokens needs " + std::to_string(d) +
                          " ranks at " + std::to_string(o.max_tokens_per_rank) +
                          " tokens per rank; the job has " + std::to_string(o.ranks) +
                          " (raise the cap, add ranks, or cut sequences shorter)");
  return std::max<int64_t>(d, 1);
}

void hdp_set_hosts(HdpOptions& o, std::vector<int64_t> hosts) {
  if (!hosts.empty() && static_cast<int64_t>(hosts.size()) != o.ranks)
    throw ConfigError("topology.rank_hosts", "HDP has " + std::to_string(o.ranks) +
                                                 " ranks, the hosts name " + std::to_string(hosts.size()) +
                                                 ": one per rank");
  std::map<int64_t, int64_t> per_host;
  for (int64_t h : hosts) ++per_host[h];
  o.largest_host = 0;
  for (const auto& [host, ranks] : per_host) o.largest_host = std::max(o.largest_host, ranks);
  o.hosts = std::move(hosts);
}

std::vector<int64_t> hdp_pipeline_hosts(const std::vector<std::vector<int64_t>>& stage_hosts) {
  std::map<std::vector<int64_t>, int64_t> index;
  std::vector<int64_t> out;
  for (const auto& p : stage_hosts)
    out.push_back(index.emplace(p, static_cast<int64_t>(index.size())).first->second);
  return out;
}

bool hdp_spans_hosts(const std::vector<int64_t>& ranks, const HdpOptions& o) {
  if (o.hosts.empty()) return false;
  return std::any_of(ranks.begin(), ranks.end(), [&](int64_t r) {
    return o.hosts.at(static_cast<size_t>(r)) != o.hosts.at(static_cast<size_t>(ranks.front()));
  });
}

double hdp_group_seconds(int64_t tokens, const std::vector<int64_t>& ranks, const HdpOptions& o,
                         const ContextParallelCost& cost) {
  return cost.seconds(tokens, static_cast<int64_t>(ranks.size()), hdp_spans_hosts(ranks, o));
}

namespace {

// The largest group one host holds (all the ranks without hosts).
int64_t ranks_on_one_host(const HdpOptions& o) {
  return o.hosts.empty() || o.largest_host <= 0 ? o.ranks : o.largest_host;
}

}  // namespace

double hdp_best_seconds(int64_t tokens, int64_t degree, const HdpOptions& o,
                        const ContextParallelCost& cost) {
  return cost.seconds(tokens, degree, degree > ranks_on_one_host(o));
}

int64_t hdp_fastest_degree(int64_t tokens, int64_t lowest, const HdpOptions& o,
                           const ContextParallelCost& cost) {
  int64_t best = lowest;
  double best_s = hdp_best_seconds(tokens, lowest, o, cost);
  for (int64_t d = lowest + 1; d <= o.ranks; ++d) {
    const double s = hdp_best_seconds(tokens, d, o, cost);
    if (s < best_s * (1 - 1e-9)) best = d, best_s = s;
  }
  return best;
}

namespace {

// The smallest degree in [lowest, highest] at whose `seconds` the sequence is done within `limit`,
// or -1. Time falls with the degree until the ring's transfers dominate: doubling, then bisection.
template <typename Seconds>
int64_t degree_within(int64_t lowest, int64_t highest, double limit, Seconds seconds) {
  if (lowest > highest) return -1;
  if (seconds(lowest) <= limit) return lowest;
  int64_t lo = lowest, hi = lowest;
  while (hi < highest && seconds(hi) > limit) lo = hi, hi = std::min(highest, hi * 2);
  if (seconds(hi) > limit) return -1;
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (seconds(mid) <= limit ? hi : lo) = mid;
  }
  return hi;
}

}  // namespace

// Degrees that fit on one host are timed within it, larger ones across hosts (slower): the two
// ranges are searched in turn.
int64_t hdp_degree_within(int64_t tokens, int64_t lowest, const HdpOptions& o, double limit,
                          const ContextParallelCost& cost) {
  const int64_t host = ranks_on_one_host(o);
  const int64_t d = degree_within(lowest, std::min(host, o.ranks), limit,
                                  [&](int64_t g) { return cost.seconds(tokens, g, false); });
  if (d > 0 || host >= o.ranks) return d;
  return degree_within(std::max(lowest, host + 1), o.ranks, limit,
                       [&](int64_t g) { return cost.seconds(tokens, g, true); });
}

HdpPlan hdp_retimed(const HdpPlan& plan, const HdpOptions& o, const ContextParallelCost& cost) {
  HdpPlan out = plan;
  for (auto& p : out.placements) p.seconds = hdp_group_seconds(p.tokens, p.ranks, o, cost);
  // Each sub-batch once (from its group's first rank), in the order the plan started them.
  std::vector<std::tuple<double, size_t, size_t>> order;
  for (size_t r = 0; r < out.sub_batches.size(); ++r)
    for (size_t i = 0; i < out.sub_batches[r].size(); ++i)
      if (out.sub_batches[r][i].group.front() == static_cast<int64_t>(r))
        order.emplace_back(out.sub_batches[r][i].start_s, r, i);
  std::sort(order.begin(), order.end());
  std::vector<double> free(static_cast<size_t>(o.ranks), 0.0);
  out.busy_s.assign(static_cast<size_t>(o.ranks), 0.0);
  out.step_s = 0;
  for (const auto& [start_was, r, i] : order) {
    const HdpSubBatch& sb = out.sub_batches[r][i];
    double start = 0;
    for (int64_t q : sb.group) start = std::max(start, free[static_cast<size_t>(q)]);
    double t = start;
    for (int64_t seq : sb.sequences) {
      auto& p = out.placements[static_cast<size_t>(seq)];
      p.start_s = t;
      t += p.seconds;
    }
    for (int64_t q : sb.group) {
      free[static_cast<size_t>(q)] = t;
      out.busy_s[static_cast<size_t>(q)] += t - start;
    }
    out.step_s = std::max(out.step_s, t);
  }
  for (auto& subs : out.sub_batches)
    for (auto& sb : subs) sb.start_s = out.placements[static_cast<size_t>(sb.sequences.front())].start_s;
  return out;
}

namespace {

constexpr int kHdpSearchSteps = 14;

std::vector<int64_t> range_of(int64_t first, int64_t count) {
  std::vector<int64_t> r(static_cast<size_t>(count));
  std::iota(r.begin(), r.end(), first);
  return r;
}

// Sequence indices, longest first (ties: lower index first).
std::vector<size_t> longest_first(const std::vector<int64_t>& lengths) {
  std::vector<size_t> order(lengths.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return lengths[a] > lengths[b]; });
  return order;
}

struct Layout {
  std::vector<HdpPlacement> placements;
  RankTimelines timelines;
  Layout(size_t sequences, const HdpOptions& o) : placements(sequences), timelines(o.ranks, o.hosts) {}

  void place(size_t seq, int64_t tokens, std::vector<int64_t> ranks, double seconds) {
    const double start = timelines.place(ranks, seconds);
    placements[seq] = {tokens, std::move(ranks), start, seconds};
  }
  void place_alone(size_t seq, int64_t tokens, double seconds) {
    const auto [rank, start] = timelines.place_alone(seconds);
    placements[seq] = {tokens, {rank}, start, seconds};
  }
};

// static: one DP x CP mesh; every sequence on its data-parallel group of CP ranks, dealt by tokens.
void plan_static(const std::vector<int64_t>& lengths, const HdpOptions& o, const ContextParallelCost& cost,
                 Layout& out) {
  int64_t need = 1;
  for (int64_t l : lengths) need = std::max(need, hdp_min_degree(l, o));
  int64_t cp = need;
  while (o.ranks % cp != 0) ++cp;
  std::vector<int64_t> tokens(static_cast<size_t>(o.ranks / cp), 0);
  for (size_t seq : longest_first(lengths)) {
    const auto g = static_cast<int64_t>(std::min_element(tokens.begin(), tokens.end()) - tokens.begin());
    tokens[static_cast<size_t>(g)] += lengths[seq];
    auto ranks = range_of(g * cp, cp);
    const double seconds = hdp_group_seconds(lengths[seq], ranks, o, cost);
    out.place(seq, lengths[seq], std::move(ranks), seconds);
  }
}

// rondo within a step of `limit` seconds, or nothing when it finds no such plan: each sequence on
// the smallest degree that finishes it in time, longest first, each group on the ranks free latest
// but early enough (the least idle time before it), single-rank sequences into the gaps groups
// leave or onto such a rank.
std::optional<Layout> plan_rondo_within(const std::vector<int64_t>& lengths, const HdpOptions& o,
                                        const ContextParallelCost& cost, double limit) {
  std::vector<int64_t> degree(lengths.size());
  std::vector<double> seconds(lengths.size());
  for (size_t i = 0; i < lengths.size(); ++i) {
    degree[i] = hdp_degree_within(lengths[i], hdp_min_degree(lengths[i], o), o, limit, cost);
    if (degree[i] < 0) return std::nullopt;
    seconds[i] = hdp_best_seconds(lengths[i], degree[i], o, cost);
  }
  std::vector<size_t> order(lengths.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return seconds[a] != seconds[b] ? seconds[a] > seconds[b] : degree[a] > degree[b];
  });
  std::optional<Layout> out(std::in_place, lengths.size(), o);
  for (size_t seq : order) {
    if (degree[seq] == 1) {
      const auto [rank, start] = out->timelines.place_alone_by(seconds[seq], limit);
      if (rank < 0) return std::nullopt;
      out->placements[seq] = {lengths[seq], {rank}, start, seconds[seq]};
      continue;
    }
    std::vector<int64_t> ranks = out->timelines.latest_group_by(
        degree[seq], limit, seconds[seq], cost.seconds(lengths[seq], degree[seq], true));
    if (ranks.empty()) return std::nullopt;
    const double on_ranks = hdp_group_seconds(lengths[seq], ranks, o, cost);
    out->place(seq, lengths[seq], std::move(ranks), on_ranks);
  }
  return out;
}

// rondo with no limit: every sequence on its smallest degree, groups onto the ranks free earliest
// (always a plan; the upper end of plan_hdp's search).
Layout plan_rondo_greedy(const std::vector<int64_t>& lengths, const HdpOptions& o,
                         const ContextParallelCost& cost) {
  Layout out(lengths.size(), o);
  for (size_t seq : longest_first(lengths)) {
    const int64_t l = lengths[seq], d = hdp_min_degree(l, o);
    if (d == 1) {
      out.place_alone(seq, l, cost.seconds(l, 1));
      continue;
    }
    auto ranks = out.timelines.earliest_group(d, cost.seconds(l, d, false), cost.seconds(l, d, true));
    const double seconds = hdp_group_seconds(l, ranks, o, cost);
    out.place(seq, l, std::move(ranks), seconds);
  }
  return out;
}

// The rank's runs in order; single-rank sequences next to each other packed up to the cap.
std::vector<std::vector<HdpSubBatch>> sub_batches_of(const std::vector<HdpPlacement>& placements,
                                                     const HdpOptions& o) {
  std::vector<std::vector<std::pair<double, size_t>>> runs(static_cast<size_t>(o.ranks));
  for (size_t i = 0; i < placements.size(); ++i)
    for (int64_t r : placements[i].ranks) runs[static_cast<size_t>(r)].emplace_back(placements[i].start_s, i);
  std::vector<std::vector<HdpSubBatch>> out(static_cast<size_t>(o.ranks));
  for (size_t r = 0; r < runs.size(); ++r) {
    std::sort(runs[r].begin(), runs[r].end());
    for (const auto& [start, i] : runs[r]) {
      const auto& p = placements[i];
      const auto d = static_cast<int64_t>(p.ranks.size());
      const int64_t share = (p.tokens + d - 1) / d;
      auto& subs = out[r];
      if (d == 1 && !subs.empty() && subs.back().group.size() == 1 &&
          subs.back().tokens_per_rank + share <= o.max_tokens_per_rank) {
        subs.back().sequences.push_back(static_cast<int64_t>(i));
        subs.back().tokens_per_rank += share;
        continue;
      }
      subs.push_back({{static_cast<int64_t>(i)}, p.ranks, share, start});
    }
  }
  return out;
}

HdpPlan finish(HdpPolicy policy, std::vector<HdpPlacement> placements, const HdpOptions& o) {
  HdpPlan plan;
  plan.policy = policy;
  plan.busy_s.assign(static_cast<size_t>(o.ranks), 0.0);
  for (const auto& p : placements) {
    for (int64_t r : p.ranks) plan.busy_s[static_cast<size_t>(r)] += p.seconds;
    plan.step_s = std::max(plan.step_s, p.start_s + p.seconds);
  }
  plan.placements = std::move(placements);
  plan.sub_batches = sub_batches_of(plan.placements, o);
  return plan;
}

}  // namespace

double hdp_lower_bound(const std::vector<int64_t>& lengths, const HdpOptions& o,
                       const ContextParallelCost& cost, int64_t stages) {
  double work = 0;
  int64_t longest = 0;
  for (int64_t l : lengths) {
    // Rank-seconds only grow with the degree (the ring adds), and across hosts.
    const int64_t d = hdp_min_degree(l, o);
    work += static_cast<double>(d) * hdp_best_seconds(l, d, o, cost);
    longest = std::max(longest, l);
  }
  // The longest sequence is also the slowest at its fastest degree.
  const int64_t lowest = hdp_min_degree(std::max<int64_t>(longest, 1), o);
  return std::max(work / static_cast<double>(o.ranks * std::max<int64_t>(stages, 1)),
                  lengths.empty()
                      ? 0.0
                      : hdp_best_seconds(longest, hdp_fastest_degree(longest, lowest, o, cost), o, cost));
}

HdpPlan plan_hdp(const std::vector<int64_t>& lengths, HdpPolicy policy, const HdpOptions& o,
                 const ContextParallelCost& cost) {
  if (o.ranks < 1) throw ConfigError("parallel.world_size", "HDP needs at least one rank");
  if (o.max_tokens_per_rank < 1) throw ConfigError("parallel.max_tokens_per_rank", "must be >= 1");
  if (policy == HdpPolicy::kMegatron) return finish(policy, megatron_placements(lengths, o, cost), o);
  if (policy == HdpPolicy::kStatic) {
    Layout layout(lengths.size(), o);
    plan_static(lengths, o, cost, layout);
    return finish(policy, std::move(layout.placements), o);
  }
  // The shortest step it finds a plan within: bisection between the lower bound and the greedy
  // plan's step.
  Layout best = plan_rondo_greedy(lengths, o, cost);
  double lo = hdp_lower_bound(lengths, o, cost), hi = best.timelines.finish();
  for (int i = 0; i < kHdpSearchSteps && hi > lo * (1 + 1e-3); ++i) {
    const double mid = i == 0 ? lo : 0.5 * (lo + hi);
    if (auto l = plan_rondo_within(lengths, o, cost, mid)) {
      hi = l->timelines.finish();
      best = std::move(*l);
    } else {
      lo = mid;
    }
  }
  return finish(policy, std::move(best.placements), o);
}

}  // namespace rondo

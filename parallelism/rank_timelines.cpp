#include "parallelism/rank_timelines.h"

#include <algorithm>
#include <limits>
#include <map>

namespace rondo {

namespace {
// Gaps shorter than this are not worth keeping (timing noise of the arithmetic).
constexpr double kMinGapS = 1e-9;
}  // namespace

RankTimelines::RankTimelines(int64_t ranks, const std::vector<int64_t>& hosts)
    : tail_(static_cast<size_t>(ranks), 0.0), busy_(static_cast<size_t>(ranks), 0.0) {
  for (int64_t r = 0; r < ranks; ++r) by_tail_.emplace(0.0, r);
  std::map<int64_t, int64_t> index;
  for (int64_t h : hosts) index.emplace(h, static_cast<int64_t>(index.size()));
  if (index.size() < 2) return;  // one host: every group on it
  host_by_tail_.resize(index.size());
  for (int64_t r = 0; r < ranks; ++r) {
    host_.push_back(index.at(hosts.at(static_cast<size_t>(r))));
    host_by_tail_[static_cast<size_t>(host_.back())].emplace(0.0, r);
  }
  for (const ByTail& host : host_by_tail_)
    largest_host_ = std::max(largest_host_, static_cast<int64_t>(host.size()));
}

bool RankTimelines::spans_hosts(const std::vector<int64_t>& ranks) const {
  if (host_.empty()) return false;
  return std::any_of(ranks.begin(), ranks.end(), [&](int64_t r) {
    return host_[static_cast<size_t>(r)] != host_[static_cast<size_t>(ranks.front())];
  });
}

std::vector<int64_t> RankTimelines::earliest_group(int64_t count, double within_s, double across_s) const {
  std::vector<int64_t> best = earliest(count);
  if (host_.empty() || best.empty()) return best;
  const auto end_of = [&](const std::vector<int64_t>& g, double seconds) {
    double start = 0;
    for (int64_t r : g) start = std::max(start, tail(r));
    return start + seconds;
  };
  bool best_spans = spans_hosts(best);
  if (!best_spans || count > largest_host_) return best;  // none better / none on one host
  double best_end = end_of(best, across_s);
  const double soonest = end_of(best, within_s);  // no group of `count` starts earlier
  for (const ByTail& host : host_by_tail_) {
    if (static_cast<int64_t>(host.size()) < count) continue;
    std::vector<int64_t> g;
    for (auto it = host.begin(); static_cast<int64_t>(g.size()) < count; ++it) g.push_back(it->second);
    const double end = end_of(g, within_s);
    if (end < best_end || (end == best_end && best_spans)) {
      std::sort(g.begin(), g.end());
      best = std::move(g), best_end = end, best_spans = false;
    }
    if (!best_spans && best_end <= soonest) break;
  }
  return best;
}

std::vector<int64_t> RankTimelines::latest_in(const ByTail& set, int64_t count, double limit) {
  std::vector<int64_t> out;
  auto it = set.upper_bound({limit, std::numeric_limits<int64_t>::max()});
  while (it != set.begin() && static_cast<int64_t>(out.size()) < count) out.push_back((--it)->second);
  return out;
}

std::vector<int64_t> RankTimelines::latest_group_by(int64_t count, double limit, double within_s,
                                                    double across_s) const {
  if (host_.empty()) return latest_by(count, limit - within_s);
  std::vector<int64_t> best;
  double best_idle = std::numeric_limits<double>::infinity(), best_start = -1;
  // No group starts later than the rank free latest by then: a host's group starting there with
  // no idle time is as good as any.
  const auto latest = latest_in(by_tail_, 1, limit - within_s);
  const double latest_start = latest.empty() ? -1 : tail(latest.front());
  for (const ByTail& host : host_by_tail_) {
    if (count > largest_host_) break;
    if (static_cast<int64_t>(host.size()) < count) continue;
    std::vector<int64_t> g = latest_in(host, count, limit - within_s);
    if (static_cast<int64_t>(g.size()) < count) continue;
    const double start = tail(g.front());  // g.front(): the latest free
    double idle = 0;
    for (int64_t r : g) idle += start - tail(r);
    // The least idle time, then the latest start (the ranks free earlier left to others).
    if (idle < best_idle - kMinGapS || (idle <= best_idle + kMinGapS && start > best_start))
      best = std::move(g), best_idle = idle, best_start = start;
    if (best_idle <= kMinGapS && best_start >= latest_start) break;
  }
  if (best.empty()) return latest_by(count, limit - across_s);
  std::sort(best.begin(), best.end());
  return best;
}

std::vector<int64_t> RankTimelines::earliest(int64_t count) const {
  std::vector<int64_t> out;
  for (auto it = by_tail_.begin(); it != by_tail_.end() && static_cast<int64_t>(out.size()) < count; ++it)
    out.push_back(it->second);
  std::sort(out.begin(), out.end());
  return out;
}

void RankTimelines::set_tail(int64_t rank, double t) {
  const std::pair<double, int64_t> old{tail_[static_cast<size_t>(rank)], rank};
  by_tail_.erase(old);
  tail_[static_cast<size_t>(rank)] = t;
  by_tail_.emplace(t, rank);
  if (host_.empty()) return;
  auto& host = host_by_tail_[static_cast<size_t>(host_[static_cast<size_t>(rank)])];
  host.erase(old);
  host.emplace(t, rank);
}

void RankTimelines::add_gap(int64_t rank, double start, double end) {
  if (end - start > kMinGapS) gaps_.insert({end - start, start, rank});
}

std::vector<int64_t> RankTimelines::latest_by(int64_t count, double limit) const {
  std::vector<int64_t> out = latest_in(by_tail_, count, limit);
  if (static_cast<int64_t>(out.size()) < count) return {};
  std::sort(out.begin(), out.end());
  return out;
}

double RankTimelines::place(const std::vector<int64_t>& ranks, double seconds) {
  double start = 0;
  for (int64_t r : ranks) start = std::max(start, tail(r));
  for (int64_t r : ranks) {
    add_gap(r, tail(r), start);
    set_tail(r, start + seconds);
    busy_[static_cast<size_t>(r)] += seconds;
  }
  return start;
}

std::pair<int64_t, double> RankTimelines::place_alone(double seconds) {
  const auto fit = gaps_.lower_bound({seconds, -1.0, -1});
  if (fit != gaps_.end()) {
    const Gap g = *fit;
    gaps_.erase(fit);
    add_gap(g.rank, g.start + seconds, g.start + g.length);
    busy_[static_cast<size_t>(g.rank)] += seconds;
    return {g.rank, g.start};
  }
  const int64_t rank = by_tail_.begin()->second;
  return {rank, place({rank}, seconds)};
}

std::pair<int64_t, double> RankTimelines::place_alone_by(double seconds, double limit) {
  const auto fit = gaps_.lower_bound({seconds, -1.0, -1});
  const std::vector<int64_t> tail = latest_by(1, limit - seconds);
  const double tail_slack = tail.empty() ? -1 : limit - seconds - this->tail(tail[0]);
  if (fit != gaps_.end() && (tail.empty() || fit->length - seconds <= tail_slack))
    return place_alone(seconds);
  if (tail.empty()) return {-1, 0.0};
  return {tail[0], place(tail, seconds)};
}

double RankTimelines::finish() const { return by_tail_.empty() ? 0.0 : by_tail_.rbegin()->first; }

}  // namespace rondo

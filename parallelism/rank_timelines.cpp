#include "parallelism/rank_timelines.h"

#include <algorithm>
#include <limits>

namespace rondo {

namespace {
// Gaps shorter than this are not worth keeping (timing noise of the arithmetic).
constexpr double kMinGapS = 1e-9;
}  // namespace

RankTimelines::RankTimelines(int64_t ranks)
    : tail_(static_cast<size_t>(ranks), 0.0), busy_(static_cast<size_t>(ranks), 0.0) {
  for (int64_t r = 0; r < ranks; ++r) by_tail_.emplace(0.0, r);
}

std::vector<int64_t> RankTimelines::earliest(int64_t count) const {
  std::vector<int64_t> out;
  for (auto it = by_tail_.begin(); it != by_tail_.end() && static_cast<int64_t>(out.size()) < count; ++it)
    out.push_back(it->second);
  std::sort(out.begin(), out.end());
  return out;
}

void RankTimelines::set_tail(int64_t rank, double t) {
  by_tail_.erase({tail_[static_cast<size_t>(rank)], rank});
  tail_[static_cast<size_t>(rank)] = t;
  by_tail_.emplace(t, rank);
}

void RankTimelines::add_gap(int64_t rank, double start, double end) {
  if (end - start > kMinGapS) gaps_.insert({end - start, start, rank});
}

std::vector<int64_t> RankTimelines::latest_by(int64_t count, double limit) const {
  std::vector<int64_t> out;
  auto it = by_tail_.upper_bound({limit, std::numeric_limits<int64_t>::max()});
  while (it != by_tail_.begin() && static_cast<int64_t>(out.size()) < count) out.push_back((--it)->second);
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

// RankTimelines: the ranks' timelines while the HDP planner lays out one batch. A group starts when
// its last member is free; its other members wait, and the wait is an idle gap that a sequence
// computed by one rank alone can fill later. Finding the ranks free earliest and the best-fitting
// gap are logarithmic, so a batch of tens of thousands of sequences on 16,384 ranks plans in well
// under a second. The ranks may sit on hosts: a group on one host passes its ring faster than one
// spanning hosts, so groups are looked for on one host first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <utility>
#include <vector>

namespace rondo {

class RankTimelines {
 public:
  // `hosts[r]`: rank r's host (any numbers; empty: every rank on one host).
  explicit RankTimelines(int64_t ranks, const std::vector<int64_t>& hosts = {});

  // The `count` ranks free earliest (ties: lower rank first), ascending by rank.
  std::vector<int64_t> earliest(int64_t count) const;
  // When the rank is next free at the end of its timeline.
  double tail(int64_t rank) const { return tail_[static_cast<size_t>(rank)]; }
  // The `count` ranks free latest but by `limit` (ascending by rank); empty when fewer are.
  std::vector<int64_t> latest_by(int64_t count, double limit) const;
  // A group of `count` ranks for a sequence taking `within_s` on one host or `across_s` spanning
  // hosts (ascending by rank). earliest_group: the one that finishes it first, ranks free earliest
  // on one host or across all (ties: one host). latest_group_by: ranks on one host free latest but
  // early enough to end by `limit`, on the host that leaves the least idle time before the group;
  // only where no host has them, ranks across hosts free latest by `limit` - `across_s`; empty
  // when neither.
  std::vector<int64_t> earliest_group(int64_t count, double within_s, double across_s) const;
  std::vector<int64_t> latest_group_by(int64_t count, double limit, double within_s, double across_s) const;
  bool spans_hosts(const std::vector<int64_t>& ranks) const;
  // Runs a group on `ranks` for `seconds` from when all of them are free; returns the start.
  double place(const std::vector<int64_t>& ranks, double seconds);
  // Runs `seconds` on one rank: in the smallest idle gap it fits, else on the rank free earliest.
  // Returns the rank and the start.
  std::pair<int64_t, double> place_alone(double seconds);
  // Runs `seconds` on one rank so that it ends by `limit`, in the place that leaves the least idle
  // time before it: the smallest gap it fits, or the rank free latest but early enough. Returns
  // the rank and the start, or rank -1 when nowhere fits.
  std::pair<int64_t, double> place_alone_by(double seconds, double limit);

  const std::vector<double>& busy() const { return busy_; }
  double finish() const;

 private:
  struct Gap {
    double length, start;
    int64_t rank;
    bool operator<(const Gap& o) const {
      if (length != o.length) return length < o.length;
      if (start != o.start) return start < o.start;
      return rank < o.rank;
    }
  };
  void set_tail(int64_t rank, double t);
  void add_gap(int64_t rank, double start, double end);

  using ByTail = std::set<std::pair<double, int64_t>>;  // (tail, rank)
  // Up to `count` ranks of `set` free latest by `limit`, latest first.
  static std::vector<int64_t> latest_in(const ByTail& set, int64_t count, double limit);

  std::vector<double> tail_, busy_;
  ByTail by_tail_;
  std::vector<int64_t> host_;  // by rank: its host's index in host_by_tail_ (empty: one host)
  std::vector<ByTail> host_by_tail_;
  int64_t largest_host_ = 0;  // ranks on the most populous host
  std::set<Gap> gaps_;
};

}  // namespace rondo

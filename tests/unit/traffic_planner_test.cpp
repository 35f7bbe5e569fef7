// Traffic planning on a leaf-spine fabric: the planned ring leaves each leaf once, its flows
// between leaves spread over the spines to the fabric's lower bound, degraded links are avoided,
// and random ECMP does worse on the same placement.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "comms/traffic_planner.h"

namespace rondo {
namespace {

LeafSpine fabric(int size) {
  return LeafSpine{
      .leaves = size, .hosts_per_leaf = size, .spines = size, .host_gbps = 100, .spine_gbps = 100};
}

int flows_between_leaves(const LeafSpine& f, const TrafficPlan& p) {
  int n = 0;
  for (const auto& flow : p.flows) n += f.leaf_of(flow.src_host) != f.leaf_of(flow.dst_host) ? 1 : 0;
  return n;
}

TEST(TrafficPlanner, TheRingLeavesEachLeafOnceAndReachesTheLowerBound) {
  const auto f = fabric(4);
  // Ranks alternate between the leaves' hosts: in rank order every edge crosses leaves.
  RingTraffic t{.host_of_rank = {0, 4, 8, 12, 1, 5, 9, 13}, .bytes = 1e9, .channels = 4};
  const auto plan = plan_ring_traffic(f, t);
  EXPECT_EQ(flows_between_leaves(f, plan), 4 * 4);  // one edge out of each of 4 leaves, 4 channels each
  EXPECT_NEAR(plan.completion_s, ring_lower_bound_s(f, t), 1e-12);
  std::mt19937 rng(1);
  const auto ecmp = ecmp_ring_traffic(f, t, rng);
  EXPECT_EQ(flows_between_leaves(f, ecmp), 8 * 4);
  EXPECT_GE(ecmp.completion_s, plan.completion_s);
  // Twice the flows out of each leaf in rank order: its uplinks carry at least twice the bytes.
  double planned_uplinks = 0, ecmp_uplinks = 0;
  for (int s = 0; s < f.spines; ++s) {
    planned_uplinks += plan.load[static_cast<size_t>(f.leaf_up(0, s))];
    ecmp_uplinks += ecmp.load[static_cast<size_t>(f.leaf_up(0, s))];
  }
  EXPECT_DOUBLE_EQ(ecmp_uplinks, 2 * planned_uplinks);
}

TEST(TrafficPlanner, RingsAllReducingAtOnceAddUpOnTheHostsTheyShare) {
  const auto f = fabric(4);
  // Two rings over the same four hosts (two ranks a host, one in each ring), one host per leaf.
  RingTraffic a{.host_of_rank = {0, 4, 8, 12}, .bytes = 1e9, .channels = 1};
  RingTraffic b = a;
  const double one = ring_lower_bound_s(f, a);
  EXPECT_NEAR(rings_lower_bound_s(f, {a}), one, 1e-15);
  EXPECT_NEAR(rings_lower_bound_s(f, {a, b}), 2 * one, 1e-15);  // each host link carries both
  // Disjoint hosts (ring b on the leaves' second hosts): only the leaves' uplinks are shared,
  // spread over four spines.
  b.host_of_rank = {1, 5, 9, 13};
  EXPECT_NEAR(rings_lower_bound_s(f, {a, b}), one, 1e-15);
}

TEST(TrafficPlanner, LoadsEachLinkOnTheFlowsPath) {
  const auto f = fabric(2);
  RingTraffic t{.host_of_rank = {0, 2}, .bytes = 1e9, .channels = 1};  // two ranks, two leaves
  const auto plan = plan_ring_traffic(f, t);
  ASSERT_EQ(plan.flows.size(), 2u);
  const double edge = 1e9;  // 2 (n - 1) / n of the bytes with n = 2
  EXPECT_DOUBLE_EQ(plan.load[static_cast<size_t>(f.host_up(0))], edge);
  EXPECT_DOUBLE_EQ(plan.load[static_cast<size_t>(f.host_down(2))], edge);
  const int s = plan.flows[0].spine;
  EXPECT_DOUBLE_EQ(plan.load[static_cast<size_t>(f.leaf_up(0, s))], edge);
  EXPECT_DOUBLE_EQ(plan.load[static_cast<size_t>(f.spine_down(s, 1))], edge);
  EXPECT_DOUBLE_EQ(plan.completion_s, edge / (100e9 / 8));
  EXPECT_EQ(f.link_name(f.leaf_up(1, 0)), "leaf 1 -> spine 0");
}

TEST(TrafficPlanner, RanksOnOneHostTalkThroughMemory) {
  const auto f = fabric(2);
  RingTraffic t{.host_of_rank = {3, 3, 3}, .bytes = 1e9, .channels = 2};
  const auto plan = plan_ring_traffic(f, t);
  EXPECT_EQ(plan.max_link_bytes(), 0.0);
  EXPECT_EQ(ring_lower_bound_s(f, t), 0.0);
}

TEST(TrafficPlanner, AvoidsDegradedLinksWhileAnotherSpineIsLeft) {
  const auto f = fabric(4);
  RingTraffic t{.host_of_rank = {0, 4, 8, 12}, .bytes = 1e9, .channels = 2};
  std::set<int> degraded = {f.leaf_up(0, 0), f.leaf_up(0, 1), f.spine_down(2, 1)};
  const auto plan = plan_ring_traffic(f, t, degraded);
  for (int link : degraded) EXPECT_EQ(plan.load[static_cast<size_t>(link)], 0.0) << f.link_name(link);
  EXPECT_NEAR(plan.completion_s, ring_lower_bound_s(f, t), 1e-12);
  // Every spine degraded on a path: the flow still goes, over the least loaded.
  std::set<int> all;
  for (int s = 0; s < f.spines; ++s) all.insert(f.leaf_up(0, s));
  const auto forced = plan_ring_traffic(f, t, all);
  double out_of_leaf_0 = 0;
  for (int s = 0; s < f.spines; ++s) out_of_leaf_0 += forced.load[static_cast<size_t>(f.leaf_up(0, s))];
  EXPECT_DOUBLE_EQ(out_of_leaf_0, 2 * 3 / 4.0 * 1e9);
}

}  // namespace
}  // namespace rondo

namespace rondo {
namespace {

TEST(RingAvoiding, KeepsTheOrderThatAlreadyAvoidsAndReversesWhenThatIsEnough) {
  EXPECT_EQ(ring_avoiding({0, 1, 2}, {{1, 0}}), (std::vector<int>{0, 1, 2}));
  // 0 -> 1 is slow one way: the same ring the other way round, 0 -> 2 -> 1 -> 0.
  EXPECT_EQ(ring_avoiding({0, 1, 2}, {{0, 1}}), (std::vector<int>{0, 2, 1}));
}

TEST(RingAvoiding, SearchesWhenReversingIsNotEnough) {
  const std::set<std::pair<int, int>> avoid = {{0, 1}, {1, 0}, {2, 3}, {3, 2}};
  const auto ring = ring_avoiding({0, 1, 2, 3, 4, 5}, avoid);
  EXPECT_EQ(avoided_links_used(ring, avoid), 0);
  EXPECT_EQ(ring.front(), 0);
  auto sorted = ring;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  // Twelve members: the seeded random search.
  std::vector<int> twelve(12);
  for (int i = 0; i < 12; ++i) twelve[static_cast<size_t>(i)] = 10 + i;
  const std::set<std::pair<int, int>> many = {{10, 11}, {11, 10}, {12, 11}, {15, 16}, {16, 17}, {21, 10}};
  EXPECT_EQ(avoided_links_used(ring_avoiding(twelve, many), many), 0);
}

TEST(RingAvoiding, UsesTheFewestWhenNoRingAvoidsThemAll) {
  // Every link out of 0 avoided: a ring must use one.
  const std::set<std::pair<int, int>> avoid = {{0, 1}, {0, 2}, {0, 3}};
  EXPECT_EQ(avoided_links_used(ring_avoiding({0, 1, 2, 3}, avoid), avoid), 1);
}

}  // namespace
}  // namespace rondo

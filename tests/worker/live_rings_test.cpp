// LiveRings: rings received while running are taken at the version every rank has, once, and
// turned into this rank's order of its group; a version some rank lacks waits.
#include <gtest/gtest.h>

#include "worker/live_rings.h"

namespace rondo {
namespace {

TEST(LiveRings, TheVersionEveryRankHasIsTakenOnceAsThisGroupsOrder) {
  // Rank 5 in the data-parallel group {1, 3, 5, 7} (world ranks by group index).
  LiveRings rings({1, 3, 5, 7}, 5);
  EXPECT_EQ(rings.received(), 0u);
  EXPECT_FALSE(rings.agree(0));
  rings.receive(1, {{0, 2, 4, 6}, {1, 5, 3, 7}});
  rings.receive(2, {{0, 2, 4, 6}, {1, 7, 5, 3}});
  EXPECT_EQ(rings.received(), 2u);
  // Another rank has only version 1: the minimum is 1, and version 1 comes in force.
  const auto first = rings.agree(1);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->version, 1u);
  EXPECT_EQ(first->refused, "");
  EXPECT_EQ(first->order, (std::vector<int>{0, 2, 1, 3}));  // 1 -> 5 -> 3 -> 7 by group index
  EXPECT_FALSE(rings.agree(1));                             // once
  const auto second = rings.agree(2);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->order, (std::vector<int>{0, 3, 2, 1}));
}

TEST(LiveRings, RingsThatDoNotFitThisGroupAreRefusedWithAReason) {
  LiveRings rings({0, 1, 2}, 1);
  rings.receive(1, {{0, 2}});  // no ring holds rank 1
  EXPECT_EQ(rings.agree(1)->refused, "no ring of this rank's group");
  rings.receive(2, {{0, 1, 4}});  // rank 4 is not in the group
  const auto change = rings.agree(2);
  EXPECT_EQ(change->refused, "rank 4 is not in this rank's group");
  EXPECT_TRUE(change->order.empty());
}

}  // namespace
}  // namespace rondo

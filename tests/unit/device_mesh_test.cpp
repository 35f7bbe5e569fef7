#include <gtest/gtest.h>

#include <set>

#include "parallelism/device_mesh.h"

namespace rondo {
namespace {

TEST(DeviceMesh, MegatronOrderTpInnermostPpOutermost) {
  const DeviceMesh mesh(16, /*tp=*/2, /*cp=*/2, /*ep=*/1, /*pp=*/2);
  EXPECT_EQ(mesh.dp(), 2);
  EXPECT_EQ(mesh.coords(0), (MeshCoords{0, 0, 0, 0, 0}));
  EXPECT_EQ(mesh.coords(1), (MeshCoords{1, 0, 0, 0, 0}));  // tp varies fastest
  EXPECT_EQ(mesh.coords(2), (MeshCoords{0, 1, 0, 0, 0}));  // then cp
  EXPECT_EQ(mesh.coords(4), (MeshCoords{0, 0, 0, 1, 0}));  // then dp
  EXPECT_EQ(mesh.coords(8), (MeshCoords{0, 0, 0, 0, 1}));  // pp outermost
  for (int r = 0; r < 16; ++r) EXPECT_EQ(mesh.rank(mesh.coords(r)), r);
}

TEST(DeviceMesh, GroupsPartitionTheWorld) {
  const DeviceMesh mesh(24, 2, 1, 3, 2);  // dp = 6, ep = 3
  for (MeshDim dim : {MeshDim::kTp, MeshDim::kCp, MeshDim::kEp, MeshDim::kDp, MeshDim::kPp, MeshDim::kDpCp}) {
    std::multiset<int> seen;
    for (const auto& g : mesh.groups(dim)) seen.insert(g.begin(), g.end());
    EXPECT_EQ(seen.size(), 24u);
    EXPECT_EQ(std::set<int>(seen.begin(), seen.end()).size(), 24u);
  }
  EXPECT_EQ(mesh.group_of(0, MeshDim::kTp), (std::vector<int>{0, 1}));
  EXPECT_EQ(mesh.group_of(0, MeshDim::kDp), (std::vector<int>{0, 2, 4, 6, 8, 10}));
  EXPECT_EQ(mesh.group_of(0, MeshDim::kEp), (std::vector<int>{0, 2, 4}));
  EXPECT_EQ(mesh.group_of(6, MeshDim::kEp), (std::vector<int>{6, 8, 10}));
  EXPECT_EQ(mesh.coords(8).ep, 1);
  EXPECT_EQ(mesh.group_of(3, MeshDim::kPp), (std::vector<int>{3, 15}));
}

}  // namespace
}  // namespace rondo

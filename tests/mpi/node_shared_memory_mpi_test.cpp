// NodeSharedMemory on real ranks of one node: every rank maps the same zero-filled block, sees
// the others' writes, and no name is left behind in /dev/shm. Run under mpirun with 1..3 ranks.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "comms/node_shared_memory.h"
#include "tests/mpi/mpi_test_main.h"

namespace rondo {
namespace {

// Shared-memory objects named by rank 0 of a group, whose pid names them.
int leftover_blocks(int leader_pid) {
  int n = 0;
  const std::string prefix = "rondo-" + std::to_string(leader_pid) + "-";
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) {
    if (e.path().filename().string().rfind(prefix, 0) == 0) ++n;
  }
  return n;
}

TEST(NodeSharedMemory, EveryRankSeesOneZeroedBlockAndTheOthersWrites) {
  constexpr size_t kSlots = 1000;
  auto block = NodeSharedMemory::create(*g_world, kSlots * sizeof(int64_t), "the test");
  ASSERT_EQ(block->size(), kSlots * sizeof(int64_t));
  auto* slots = static_cast<int64_t*>(block->data());
  g_world->native_barrier();
  for (size_t i = 0; i < kSlots; ++i) ASSERT_EQ(slots[i], 0) << "slot " << i << " not zero-filled";
  g_world->native_barrier();
  const int rank = g_world->rank(), size = g_world->size();
  for (size_t i = static_cast<size_t>(rank); i < kSlots; i += static_cast<size_t>(size)) {
    slots[i] = static_cast<int64_t>(i) * 10 + rank;
  }
  g_world->native_barrier();
  for (size_t i = 0; i < kSlots; ++i) {
    ASSERT_EQ(slots[i], static_cast<int64_t>(i) * 10 + static_cast<int64_t>(i % static_cast<size_t>(size)));
  }
  if (rank == 0) {
    EXPECT_EQ(leftover_blocks(static_cast<int>(::getpid())), 0) << "the block's name outlived create()";
  }
}

TEST(NodeSharedMemory, SubgroupsGetBlocksOfTheirOwn) {
  // Two groups (even and odd ranks): each shares its own block.
  std::vector<int> even, odd;
  for (int r = 0; r < g_world->size(); ++r) (r % 2 ? odd : even).push_back(r);
  auto evens = g_world->split(even);
  auto odds = g_world->split(odd);
  auto& mine = g_world->rank() % 2 ? *odds : *evens;
  auto block = NodeSharedMemory::create(mine, sizeof(int64_t), "the test");
  auto* value = static_cast<int64_t*>(block->data());
  if (mine.rank() == 0) *value = 100 + g_world->rank() % 2;
  mine.native_barrier();
  EXPECT_EQ(*value, 100 + g_world->rank() % 2);
  mine.native_barrier();
}

}  // namespace
}  // namespace rondo

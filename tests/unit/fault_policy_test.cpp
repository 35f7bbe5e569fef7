// faults.policy restart: which ranks (and, under srun, which hosts) the next launch leaves out.
#include <gtest/gtest.h>

#include "orchestrator/fault_monitor.h"

namespace rondo {
namespace {

TEST(LeaveOut, OnOneMachineOnlyTheFaultyRanksGo) {
  const std::vector<std::string> hosts(4, "vm");
  for (bool srun : {false, true}) {
    const auto out = leave_out({2}, hosts, srun);
    EXPECT_EQ(out.ranks, 1);
    EXPECT_EQ(out.excluded_hosts, "");
  }
}

TEST(LeaveOut, UnderSrunTheFaultyRanksHostsGoWithTheirRanks) {
  const std::vector<std::string> hosts = {"n1", "n1", "n2", "n2", "n3", "n3"};
  auto out = leave_out({3}, hosts, true);
  EXPECT_EQ(out.ranks, 2);
  EXPECT_EQ(out.excluded_hosts, "n2");
  out = leave_out({0, 5}, hosts, true);
  EXPECT_EQ(out.ranks, 4);
  EXPECT_EQ(out.excluded_hosts, "n1,n3");
  // mpirun: rondo does not edit its host list; the faulty ranks only.
  out = leave_out({3}, hosts, false);
  EXPECT_EQ(out.ranks, 1);
  EXPECT_EQ(out.excluded_hosts, "");
}

TEST(LeaveOut, AHostIsExcludedOnlyWhenAnotherIsLeftAndEveryFaultyRanksHostIsKnown) {
  EXPECT_EQ(leave_out({0, 2}, {"n1", "n1", "n2", "n2"}, true).excluded_hosts, "");  // both hosts faulty
  EXPECT_EQ(leave_out({0, 2}, {"n1", "n1", "n2", "n2"}, true).ranks, 2);
  EXPECT_EQ(leave_out({1}, {"n1", "", "n2"}, true).excluded_hosts, "");  // rank 1 never registered
  EXPECT_EQ(leave_out({1}, {"n1", "", "n2"}, true).ranks, 1);
}

}  // namespace
}  // namespace rondo

// faults.policy restart: which ranks (and, under srun, which hosts) the next launch leaves out;
// faults.policy replan: a slow link changes the gradients' rings while the job runs, or stops it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "orchestrator/fault_monitor.h"
#include "tests/unit/ring_reports.h"

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

// 30 steps of a 4-rank ring whose link 1 -> 2 is ten times slower, through a replan monitor; the
// commands each rank's next heartbeat would take.
std::vector<std::vector<control::Command>> replan_commands(
    FaultMonitor::RingPlanner planner, std::vector<std::pair<int, int>>* asked = nullptr) {
  namespace fs = std::filesystem;
  const auto dir = fs::temp_directory_path() / ("rondo-replan-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  JobState state(dir.string(), 4, 30);
  FaultMonitor monitor(state, dir, DetectorOptions{}, "replan");
  monitor.begin_attempt(4);
  if (planner) {
    monitor.set_ring_planner([planner, asked](const std::vector<std::pair<int, int>>& links) {
      if (asked) *asked = links;
      return planner(links);
    });
  }
  std::vector<int64_t> ends(4, synthetic::kSecond);
  for (int64_t step = 1; step <= 30; ++step) {
    auto spec = synthetic::clean();
    spec.link_s[{1, 2}] = 0.02;
    for (const auto& r : synthetic::ring_reports(step, static_cast<uint64_t>(step), spec, 0, &ends))
      monitor.add_report(r);
  }
  std::vector<std::vector<control::Command>> out;
  for (int r = 0; r < 4; ++r) {
    control::HeartbeatRequest beat;
    beat.set_rank(r);
    out.push_back(state.heartbeat(beat));
  }
  EXPECT_TRUE(monitor.take_live_links().size() + monitor.take_replan_links().size() == 1);
  fs::remove_all(dir);
  return out;
}

TEST(Replan, ASlowLinkChangesEveryRanksRingsWhileTheJobRuns) {
  std::vector<std::pair<int, int>> asked;
  const auto commands = replan_commands(
      [](const std::vector<std::pair<int, int>>&) {
        control::RingOrders rings;
        auto* ring = rings.add_rings();
        for (int r : {0, 2, 1, 3}) ring->add_ranks(r);
        return std::optional<control::RingOrders>(rings);
      },
      &asked);
  EXPECT_EQ(asked, (std::vector<std::pair<int, int>>{{1, 2}}));
  for (const auto& c : commands) {
    ASSERT_EQ(c.size(), 1u);  // no STOP
    EXPECT_EQ(c[0].kind(), control::Command::SET_RINGS);
    EXPECT_EQ(c[0].rings().version(), 1u);
    ASSERT_EQ(c[0].rings().rings_size(), 1);
    EXPECT_EQ(std::vector<int>(c[0].rings().rings(0).ranks().begin(), c[0].rings().rings(0).ranks().end()),
              (std::vector<int>{0, 2, 1, 3}));
  }
}

TEST(Replan, WithoutLiveRingsTheJobStopsToRelaunchAroundTheLink) {
  for (const bool planner : {false, true}) {  // none for this launch, or one that finds no rings
    const auto commands = replan_commands(
        planner ? FaultMonitor::RingPlanner([](const auto&) { return std::optional<control::RingOrders>(); })
                : FaultMonitor::RingPlanner());
    ASSERT_EQ(commands[0].size(), 1u);
    EXPECT_EQ(commands[0][0].kind(), control::Command::STOP);
    for (int r = 1; r < 4; ++r) EXPECT_TRUE(commands[static_cast<size_t>(r)].empty());
  }
}

}  // namespace
}  // namespace rondo

// The fault detector over synthetic step reports (tests/unit/ring_reports.h): a ring allreduce per
// step whose members enter at chosen times and whose links take chosen times per byte.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "faults/fault_detector.h"
#include "tests/unit/ring_reports.h"

namespace rondo {
namespace {

using namespace synthetic;

// Runs `steps` steps through a detector; `spec_of(step)` shapes each; entry jitter up to 3 ms.
// `touch` (optional) edits each report before the detector sees it.
std::vector<Verdict> run(int steps, const std::function<RingStep(int64_t)>& spec_of, unsigned seed = 1,
                         const std::function<void(report::StepReport&)>& touch = {},
                         const DetectorOptions& options = {}) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> jitter(0.0, 0.003);
  FaultDetector detector(spec_of(0).n, options);
  std::vector<Verdict> verdicts;
  std::vector<int64_t> ends(static_cast<size_t>(spec_of(0).n), kSecond);  // each rank computes, then reduces
  for (int64_t step = 1; step <= steps; ++step) {
    auto spec = spec_of(step);
    for (auto& e : spec.enter_s) e += jitter(rng);
    for (auto& r : ring_reports(step, static_cast<uint64_t>(step), spec, 0, &ends)) {
      if (touch) touch(r);
      for (auto& v : detector.add(r)) verdicts.push_back(std::move(v));
    }
  }
  for (auto& v : detector.finish()) verdicts.push_back(std::move(v));
  return verdicts;
}

TEST(FaultDetector, ACleanRunRaisesNoVerdict) {
  for (unsigned seed = 1; seed <= 5; ++seed) {
    EXPECT_TRUE(run(
                    200, [](int64_t) { return clean(); }, seed)
                    .empty())
        << "seed " << seed;
  }
}

TEST(FaultDetector, NamesTheRankTheOthersWaitFor) {
  const auto verdicts = run(30, [](int64_t step) {
    auto s = clean();
    if (step >= 6) s.enter_s[2] += 0.2;  // 20% of the step later than its peers
    return s;
  });
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].kind, FaultKind::kSlowRank);
  EXPECT_EQ(verdicts[0].ranks, std::vector<int>{2});
  EXPECT_LE(verdicts[0].step, 6 + 10);
  EXPECT_GT(verdicts[0].evidence.at("others_waited_share").get<double>(), DetectorOptions{}.slow_rank_share);
}

// Pipeline stages of different predicted work (1 and 2 s a step, alternating), each rank computing
// 0.1 of its prediction times `slowness[rank]`; the ring's entries clean, as when a stage slow from
// the first step sets its hops' baselines.
std::vector<Verdict> run_stages(const std::vector<double>& slowness, bool predicted = true) {
  DetectorOptions options;
  if (predicted) options.predicted_compute_s = {1.0, 2.0, 1.0, 2.0};
  return run(
      30, [](int64_t) { return clean(); }, 1,
      [&](report::StepReport& r) {
        const double work = 0.1 * (r.rank() % 2 ? 2.0 : 1.0) * slowness.at(static_cast<size_t>(r.rank()));
        r.set_forward_s(work / 3);
        r.set_backward_s(2 * work / 3);
      },
      options);
}

TEST(FaultDetector, NamesAStageSlowFromTheStartAgainstItsPrediction) {
  const auto verdicts = run_stages({1.0, 1.0, 1.0, 1.8});
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].kind, FaultKind::kSlowRank);
  EXPECT_EQ(verdicts[0].ranks, std::vector<int>{3});
  EXPECT_LE(verdicts[0].step, FaultDetector::kWarmupSteps + 8);
  EXPECT_NEAR(verdicts[0].evidence.at("compute_over_others").get<double>(), 1.8, 1e-6);
  EXPECT_NEAR(verdicts[0].evidence.at("predicted_compute_s").get<double>(), 2.0, 1e-12);
  // Stages apart by less than the factor (cost-model error), or no predictions: nothing.
  EXPECT_TRUE(run_stages({1.0, 1.25, 0.9, 1.15}).empty());
  EXPECT_TRUE(run_stages({1.0, 1.0, 1.0, 1.8}, false).empty());
  // Two slow stages of four are each judged against the others' median (the two healthy and the
  // other slow one), not against all four's.
  const auto two = run_stages({1.0, 2.0, 1.0, 2.0});
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].ranks, std::vector<int>{1});
  EXPECT_EQ(two[1].ranks, std::vector<int>{3});
}

TEST(FaultDetector, TheFirstStepsOfAnAttemptAreNotJudged) {
  const auto verdicts = run(30, [](int64_t step) {
    auto s = clean();
    if (step <= FaultDetector::kWarmupSteps) s.enter_s[0] += 0.4;  // rank 0 setting up
    return s;
  });
  EXPECT_TRUE(verdicts.empty());
}

TEST(FaultDetector, TwoRanksLinksAreNotJudgedAgainstEachOther) {
  const auto verdicts = run(30, [](int64_t) {
    auto s = clean(2);
    s.link_s[{0, 1}] = 0.02;
    return s;
  });
  EXPECT_TRUE(verdicts.empty());
}

TEST(FaultDetector, OneNoisyStepIsNotAFault) {
  const auto verdicts = run(40, [](int64_t step) {
    auto s = clean();
    if (step == 10 || step == 20 || step == 25) s.enter_s[1] += 0.5;
    return s;
  });
  EXPECT_TRUE(verdicts.empty());
}

TEST(FaultDetector, NamesASlowLinkNotItsEndpoints) {
  const auto verdicts = run(30, [](int64_t) {
    auto s = clean();
    s.link_s[{1, 2}] = 0.02;  // ten times the others' time per byte
    return s;
  });
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].kind, FaultKind::kSlowLink);
  ASSERT_TRUE(verdicts[0].link.has_value());
  EXPECT_EQ(*verdicts[0].link, std::make_pair(1, 2));
  EXPECT_TRUE(verdicts[0].ranks.empty());
  EXPECT_NEAR(verdicts[0].evidence.at("ratio").get<double>(), 10.0, 1.0);
}

// A receiver kept off its core by another process takes its transfers in late: its link looks
// slow, but the run queue says whose fault it is.
TEST(FaultDetector, AStarvedReceiverIsTheRankNotItsLink) {
  const auto slow_link = [](int64_t) {
    auto s = clean();
    s.link_s[{1, 2}] = 0.02;
    return s;
  };
  const auto verdicts = run(
      30, slow_link, 1, [](report::StepReport& r) { r.set_run_queue_wait_s(r.rank() == 2 ? 0.3 : 0.001); });
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].kind, FaultKind::kSlowRank);
  EXPECT_EQ(verdicts[0].ranks, std::vector<int>{2});
  EXPECT_NE(verdicts[0].evidence.at("pattern").get<std::string>().find("starved"), std::string::npos);
  // The usual background of a busy machine does not excuse a slow link.
  const auto background = run(30, slow_link, 1, [](report::StepReport& r) { r.set_run_queue_wait_s(0.01); });
  ASSERT_EQ(background.size(), 1u);
  EXPECT_EQ(background[0].kind, FaultKind::kSlowLink);
}

// An all-to-all of the step's four ranks after the ring (group ep@0): rank r sends to r + k and
// receives from r - k in round k, each block taking 2 ms except over the links of `slow_s`.
void add_all_to_all(report::StepReport& r, const std::map<std::pair<int, int>, double>& slow_s) {
  const int n = 4, me = r.rank();
  const int64_t posted = r.step() * 10 * kSecond + 5 * kSecond;
  auto* c = r.add_collectives();
  c->set_group("ep@0");
  c->set_group_seq(static_cast<uint64_t>(r.step()));
  c->set_op("alltoallv");
  c->set_group_size(n);
  c->set_completed(true);
  c->set_enter_ns(posted);
  int64_t end = posted;
  for (int k = 1; k < n; ++k) {
    const int to = (me + k) % n, from = (me + n - k) % n;
    const auto slow = slow_s.find({from, me});
    const double d = slow == slow_s.end() ? 0.002 : slow->second;
    auto* e = c->add_exchanges();
    e->set_send_peer(to);
    e->set_recv_peer(from);
    e->set_bytes(kBlock);
    e->set_posted_ns(posted);
    e->set_recv_ns(posted + static_cast<int64_t>(d * 1e9));
    e->set_done_ns(e->recv_ns());
    end = std::max(end, e->done_ns());
  }
  c->set_end_ns(end);
}

// A receiver starved for CPU takes in every transfer late; one that took in its other links'
// transfers on time is not why this one link is slow: the link is named, not the rank.
TEST(FaultDetector, AStarvedReceiverWhoseOtherLinksKeptUpIsNotWhyItsSlowLinkIsSlow) {
  const auto verdicts = run(
      30, [](int64_t) { return clean(); }, 1,
      [](report::StepReport& r) {
        add_all_to_all(r, {{{0, 2}, 0.05}});
        r.set_run_queue_wait_s(r.rank() == 2 ? 0.3 : 0.001);
      });
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].kind, FaultKind::kSlowLink);
  ASSERT_TRUE(verdicts[0].link.has_value());
  EXPECT_EQ(*verdicts[0].link, std::make_pair(0, 2));
  EXPECT_NE(verdicts[0].evidence.at("pattern").get<std::string>().find("cell"), std::string::npos);
}

// A throttled link slows its reverse too (over TCP its acknowledgements queue behind the slow
// direction's data): both directions slow and nothing else around them is the slower one, not the
// two ranks' nodes.
TEST(FaultDetector, BothDirectionsOfALinkSlowAreTheSlowerOne) {
  const auto verdicts = run(
      30, [](int64_t) { return clean(); }, 1,
      [](report::StepReport& r) {
        add_all_to_all(r, {{{0, 2}, 0.06}, {{2, 0}, 0.02}});
      });
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].kind, FaultKind::kSlowLink);
  ASSERT_TRUE(verdicts[0].link.has_value());
  EXPECT_EQ(*verdicts[0].link, std::make_pair(0, 2));
  EXPECT_TRUE(verdicts[0].evidence.contains("reverse_also_slow"));
}

// Transfers queued behind each other on a slow link take longer than its typical time: that
// spread is the link's, not a stall of its receiver (seen in an MoE job over a throttled link).
TEST(FaultDetector, TheSpreadOfASlowLinksTransfersIsNotItsReceiversStall) {
  const auto verdicts = run(30, [](int64_t) {
    auto s = clean();
    s.link_s[{1, 2}] = 0.06;
    s.stalled_s[2] = 0.2;  // the second transfer over it took 0.26 s
    return s;
  });
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].kind, FaultKind::kSlowLink);
  EXPECT_EQ(*verdicts[0].link, std::make_pair(1, 2));
}

TEST(FaultDetector, TheReceiverOfASlowLinkIsNotLateForLeavingItsCollectiveLate) {
  // Rank 2 takes in the ring's last block over the slow link 1 -> 2, leaves the allreduce last and
  // enters the next one as late as it left, its compute as long as everyone's: the link, not rank 2.
  const auto verdicts = run(30, [](int64_t) {
    auto s = clean();
    s.link_s[{1, 2}] = 0.06;
    return s;
  });
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].kind, FaultKind::kSlowLink);
  EXPECT_EQ(*verdicts[0].link, std::make_pair(1, 2));
}

TEST(FaultDetector, ALateSenderIsNotBlamedOnItsLink) {
  const auto verdicts = run(30, [](int64_t) {
    auto s = clean();
    s.enter_s[3] += 0.3;
    return s;
  });
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].kind, FaultKind::kSlowRank);
  EXPECT_EQ(verdicts[0].ranks, std::vector<int>{3});
}

TEST(FaultDetector, SlowLinksInAndOutOfOneRankAreThatRanksNodeWhenItIsNotLate) {
  const auto verdicts = run(30, [](int64_t) {
    auto s = clean();
    s.link_s[{0, 1}] = 0.03;
    s.link_s[{1, 2}] = 0.03;
    return s;
  });
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].kind, FaultKind::kSlowLink);
  EXPECT_EQ(verdicts[0].ranks, std::vector<int>{1});
  EXPECT_FALSE(verdicts[0].link.has_value());
  EXPECT_TRUE(verdicts[0].evidence.contains("slow_links_in_and_out"));
}

TEST(FaultDetector, SlowLinksInAndOutOfALateRankAreThatRank) {
  const auto verdicts = run(30, [](int64_t) {
    auto s = clean();
    s.link_s[{0, 1}] = 0.03;
    s.link_s[{1, 2}] = 0.03;
    s.enter_s[1] += 0.3;
    return s;
  });
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].kind, FaultKind::kSlowRank);
  EXPECT_EQ(verdicts[0].ranks, std::vector<int>{1});
  EXPECT_TRUE(verdicts[0].evidence.contains("slow_links_in_and_out"));
}

TEST(FaultDetector, AReceiverThatTakesTransfersInLateIsTheRankNotItsLink) {
  // Stopped now and then (SIGSTOP, a competing process): one transfer a step reaches rank 2 late,
  // the others in its link's usual time. Its link's typical time is normal; the excess is rank 2's.
  const auto verdicts = run(30, [](int64_t) {
    auto s = clean();
    s.stalled_s[2] = 0.2;
    return s;
  });
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].kind, FaultKind::kSlowRank);
  EXPECT_EQ(verdicts[0].ranks, std::vector<int>{2});
  EXPECT_GT(verdicts[0].evidence.at("receive_stall_share").get<double>(), DetectorOptions{}.slow_rank_share);
}

TEST(FaultDetector, AVerdictIsRaisedOncePerEpisode) {
  const auto verdicts = run(80, [](int64_t step) {
    auto s = clean();
    if ((step >= 5 && step < 25) || step >= 50) s.enter_s[0] += 0.3;  // slow, well again, slow again
    return s;
  });
  ASSERT_EQ(verdicts.size(), 2u);
  EXPECT_LT(verdicts[0].step, 25);
  EXPECT_GE(verdicts[1].step, 50);
}

TEST(FaultDetector, LinesUpRecordsSpreadOverReportsOfDifferentSteps) {
  // Rank 1 reports each collective one step late (an asynchronous update's collective closes after
  // the step's report): the collectives still line up and the slow rank is still found.
  FaultDetector detector(2);
  std::vector<Verdict> verdicts;
  std::optional<report::StepReport> held;
  for (int64_t step = 1; step <= 30; ++step) {
    RingStep spec = clean(2);
    spec.enter_s[0] += 0.25;
    auto reports = ring_reports(step, static_cast<uint64_t>(step), spec);
    auto late = reports[1];
    reports[1].clear_collectives();
    if (held) *reports[1].mutable_collectives() = held->collectives();
    held = late;
    for (const auto& r : reports) {
      for (auto& v : detector.add(r)) verdicts.push_back(std::move(v));
    }
  }
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].ranks, std::vector<int>{0});
}

TEST(FaultDetector, ARestartStartsOver) {
  FaultDetector detector(4);
  for (int64_t step = 1; step <= 10; ++step) {
    auto spec = clean();
    spec.enter_s[1] += 0.3;
    for (const auto& r : ring_reports(step, static_cast<uint64_t>(step), spec)) detector.add(r);
  }
  EXPECT_GT(detector.suspicion(1), 0.0);
  // Attempt 1 numbers its collectives from 0 again, and rank 1 is well now.
  for (const auto& r : ring_reports(3, 0, clean(), 1)) EXPECT_TRUE(detector.add(r).empty());
  EXPECT_EQ(detector.suspicion(1), 0.0);
  EXPECT_EQ(detector.last_completed(0, "dp@0"), 0u);
}

TEST(CollectiveLineup, MatchesEachTransferWithItsSendersSide) {
  RingStep spec = clean(3);
  spec.enter_s[0] += 0.1;  // rank 0 posts late: rank 1's first receive waited for it
  spec.link_s[{2, 0}] = 0.01;
  CollectiveLineup lineup;
  std::vector<LinedUpCollective> done;
  for (const auto& r : ring_reports(1, 7, spec)) {
    auto c = lineup.add(r);
    done.insert(done.end(), c.begin(), c.end());
  }
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].group_seq, 7u);
  EXPECT_EQ(lineup.pending(), 0u);
  const auto a = arrivals(done[0]);
  EXPECT_EQ(a.latest, 0);
  EXPECT_NEAR(a.blame_s, 0.1, 1e-6);
  std::map<std::pair<int, int>, std::vector<double>> per_link;
  for (const auto& t : link_transfers(done[0])) per_link[{t.src, t.dst}].push_back(t.seconds);
  ASSERT_EQ(per_link.size(), 3u);
  for (const auto& [link, times] : per_link) {
    EXPECT_EQ(times.size(), 4u);  // 2 (n - 1) ring steps
    for (double t : times) EXPECT_NEAR(t, link == std::make_pair(2, 0) ? 0.01 : 0.002, 1e-6);
  }
}

}  // namespace
}  // namespace rondo

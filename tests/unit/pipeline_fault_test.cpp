// Pipeline transfers in fault localisation (faults/transfer_lineup.h, the detector's pipeline
// hops) over synthetic two-stage reports: each step, four activations from rank 0 to rank 1 and
// four gradients back, each receiver waiting from a chosen time and each sender posting a chosen
// lateness after it.
#include <gtest/gtest.h>

#include "faults/fault_detector.h"
#include "faults/transfer_lineup.h"

namespace rondo {
namespace {

constexpr int64_t kNs = 1'000'000'000;

void add_transfer(report::StepReport& sender, report::StepReport& receiver, int64_t wait_ns,
                  int64_t posted_ns, int64_t link_ns) {
  auto* s = sender.add_collectives();
  s->set_op("send");
  s->set_bytes(1 << 20);
  s->set_enter_ns(posted_ns);
  s->set_end_ns(posted_ns + link_ns);
  s->set_completed(true);
  s->add_connections()->set_send_peer(receiver.rank());
  auto* r = receiver.add_collectives();
  r->set_op("recv");
  r->set_bytes(1 << 20);
  const int64_t end = std::max(wait_ns, posted_ns) + link_ns;
  r->set_enter_ns(wait_ns - kNs / 100);
  r->set_end_ns(end);
  r->set_completed(true);
  auto* c = r->add_connections();
  c->set_recv_peer(sender.rank());
  c->set_total_ns(static_cast<uint64_t>(end - wait_ns));
}

// Step `step` of a 1-second step: rank 0's activations reach rank 1 `f_late` s after it began
// waiting for them, rank 1's gradients reach rank 0 `b_late` s after it did.
std::vector<report::StepReport> pipeline_step(int64_t step, double f_late, double b_late) {
  std::vector<report::StepReport> reports(2);
  for (int r = 0; r < 2; ++r) {
    reports[static_cast<size_t>(r)].set_rank(r);
    reports[static_cast<size_t>(r)].set_step(step);
    reports[static_cast<size_t>(r)].set_step_time_s(1.0);
  }
  const int64_t base = step * 10 * kNs;
  for (int k = 0; k < 4; ++k) {
    const int64_t f_wait = base + k * kNs / 5, b_wait = f_wait + kNs / 10;
    add_transfer(reports[0], reports[1], f_wait, f_wait + static_cast<int64_t>(f_late * 1e9), kNs / 1000);
    add_transfer(reports[1], reports[0], b_wait, b_wait + static_cast<int64_t>(b_late * 1e9), kNs / 1000);
  }
  return reports;
}

std::vector<Verdict> run(int steps, const std::function<std::pair<double, double>(int64_t)>& late) {
  FaultDetector detector(2);
  std::vector<Verdict> out;
  for (int64_t step = 1; step <= steps; ++step) {
    const auto [f, b] = late(step);
    for (const auto& r : pipeline_step(step, f, b)) {
      for (auto& v : detector.add(r)) out.push_back(std::move(v));
    }
  }
  for (auto& v : detector.finish()) out.push_back(std::move(v));
  return out;
}

TEST(TransferLineup, MatchesTheKthSendWithTheKthReceiveOfItsLink) {
  TransferLineup lineup;
  auto reports = pipeline_step(1, 0.03, -0.01);  // the gradients were posted before rank 0 waited
  EXPECT_TRUE(lineup.add(reports[1]).empty()) << "rank 1's sends wait for rank 0's receives";
  const auto matched = lineup.add(reports[0]);
  ASSERT_EQ(matched.size(), 8u);
  for (const auto& t : matched) {
    if (t.src == 0) {
      EXPECT_NEAR(t.sender_late_s, 0.03, 1e-9);
      EXPECT_NEAR(t.link_s, 0.001, 1e-9);
    } else {
      EXPECT_EQ(t.sender_late_s, 0);
      EXPECT_EQ(t.link_s, -1) << "posted before the receiver waited: no measure of the link";
    }
    EXPECT_EQ(t.step, 1);
  }
}

TEST(PipelineFaults, AStageSlowedMidRunIsNamed) {
  const auto verdicts = run(40, [](int64_t step) { return std::make_pair(0.02, step >= 20 ? 0.12 : 0.02); });
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].kind, FaultKind::kSlowRank);
  EXPECT_EQ(verdicts[0].ranks, std::vector<int>{1});
  EXPECT_LE(verdicts[0].step, 20 + 8);
}

TEST(PipelineFaults, WaitsTheScheduleMakesFromTheStartAreNotAFault) {
  // The second stage is heavier by design: the first waits for its gradients every step.
  EXPECT_TRUE(run(60, [](int64_t) { return std::make_pair(0.02, 0.12); }).empty());
  EXPECT_TRUE(run(60, [](int64_t) { return std::make_pair(0.02, 0.02); }).empty());
}

}  // namespace
}  // namespace rondo

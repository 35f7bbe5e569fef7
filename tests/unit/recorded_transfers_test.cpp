// RecordedTransfers (comms/recorded_transfers.h): ring attention's transfers in the flight
// recorder, peers named by world rank on a channel of their own, a blocked wait's record open and
// naming the peer; and the fault detector's lineups leaving such records alone (they are neither a
// collective nor the pipeline's transfers).
#include <gtest/gtest.h>

#include <thread>
#include <tuple>

#include "common/errors.h"
#include "comms/group_view.h"
#include "comms/in_process_communicator.h"
#include "comms/recorded_transfers.h"
#include "comms/timing_recorder.h"
#include "faults/collective_lineup.h"
#include "faults/fault_detector.h"
#include "faults/transfer_lineup.h"

namespace rondo {
namespace {

TEST(RecordedTransfers, RecordsAWaitedTransferOnItsChannelNamingWorldRanks) {
  auto world = InProcessCommunicator::create_world(3);
  TimingRecorder rec0(8), rec2(8);
  // A group of world ranks 2 and 0, in that order (member 0 is world rank 2). The receiver waits
  // before the sender sends; the in-process send completes at once (buffered).
  std::thread t([&] {
    GroupView view(*world[2], {2, 0});
    RecordedTransfers ring(view, &rec2, {2, 0}, "ring");
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    std::vector<float> block(64, 1.0f);
    ring.isend(block.data(), block.size() * sizeof(float), 1, 7)->wait(std::chrono::seconds(5));
  });
  GroupView view(*world[0], {2, 0});
  RecordedTransfers ring(view, &rec0, {2, 0}, "ring");
  std::vector<float> got(64, 0.0f);
  ring.irecv(got.data(), got.size() * sizeof(float), 0, 7)->wait(std::chrono::seconds(5));
  t.join();
  EXPECT_EQ(got[63], 1.0f);
  const auto recv = rec0.snapshot();
  ASSERT_EQ(recv.size(), 1u);
  EXPECT_EQ(recv[0].op, CollectiveOp::kRecv);
  EXPECT_EQ(recv[0].group, "ring");
  EXPECT_TRUE(recv[0].completed);
  EXPECT_EQ(recv[0].bytes, 256u);
  ASSERT_EQ(recv[0].connections.size(), 1u);
  EXPECT_EQ(recv[0].connections[0].recv_peer, 2);           // the world rank, not the member
  EXPECT_GE(recv[0].connections[0].total_ns, 10'000'000u);  // it waited for the sender's sleep
  EXPECT_LE(recv[0].enter_ns, recv[0].end_ns);
  // The send was done before it was waited for: nothing to record.
  EXPECT_TRUE(rec2.snapshot().empty());
}

TEST(RecordedTransfers, AWaitThatTimesOutLeavesItsRecordOpenNamingThePeer) {
  auto world = InProcessCommunicator::create_world(2);
  TimingRecorder rec(8);
  RecordedTransfers ring(*world[1], &rec, {4, 5}, "ring");  // world ranks 4 and 5
  std::vector<float> got(4);
  EXPECT_THROW(ring.irecv(got.data(), sizeof(float) * got.size(), 0, 7)->wait(std::chrono::milliseconds(50)),
               TimeoutError);
  const auto records = rec.snapshot();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_FALSE(records[0].completed);
  EXPECT_EQ(records[0].waiting_recv_peer, 4);
  EXPECT_EQ(records[0].group, "ring");
}

TEST(RecordedTransfers, PastItsBudgetAChannelRecordsOnlyLongWaits) {
  auto world = InProcessCommunicator::create_world(2);
  TimingRecorder rec(256);
  RecordedTransfers ring(*world[1], &rec, {0, 1}, "ring");
  int got = 0;
  for (int i = 0; i < RecordedTransfers::kRecordsPerSecond + 8; ++i)  // each blocks, then times out
    EXPECT_THROW(ring.irecv(&got, sizeof got, 0, 7)->wait(std::chrono::milliseconds(2)), TimeoutError);
  EXPECT_EQ(rec.snapshot().size(), static_cast<size_t>(RecordedTransfers::kRecordsPerSecond));
  // A wait as long as kLongWait is recorded whatever the budget: a hang's evidence.
  const auto long_wait = RecordedTransfers::kLongWait + std::chrono::milliseconds(100);
  EXPECT_THROW(ring.irecv(&got, sizeof got, 0, 7)->wait(long_wait), TimeoutError);
  const auto records = rec.snapshot();
  ASSERT_EQ(records.size(), static_cast<size_t>(RecordedTransfers::kRecordsPerSecond) + 1);
  EXPECT_FALSE(records.back().completed);
  EXPECT_EQ(records.back().waiting_recv_peer, 0);
}

TEST(RecordedTransfers, WithoutARecorderTransfersPassThrough) {
  auto world = InProcessCommunicator::create_world(2);
  RecordedTransfers a(*world[0], nullptr, {0, 1}, "ring"), b(*world[1], nullptr, {0, 1}, "ring");
  int out = 42, in = 0;
  auto s = a.isend(&out, sizeof out, 1, 3);
  b.irecv(&in, sizeof in, 0, 3)->wait(std::chrono::seconds(5));
  s->wait(std::chrono::seconds(5));
  EXPECT_EQ(in, 42);
  EXPECT_THROW(RecordedTransfers(*world[0], nullptr, {0}, "ring"), std::invalid_argument);
}

TEST(RecordedTransfers, TheLineupsLeaveRingRecordsAlone) {
  report::StepReport send, recv;
  send.set_rank(0);
  recv.set_rank(1);
  send.set_step(3);
  recv.set_step(3);
  for (const auto& [report, op, peer] : {std::tuple{&send, "send", 1}, std::tuple{&recv, "recv", 0}}) {
    auto* r = report->add_collectives();
    r->set_op(op);
    r->set_group("ring");
    r->set_group_size(2);
    r->set_completed(true);
    r->set_enter_ns(1000);
    r->set_end_ns(2000);
    auto* c = r->add_connections();
    (std::string(op) == "send" ? c->set_send_peer(peer) : c->set_recv_peer(peer));
  }
  TransferLineup transfers;
  CollectiveLineup collectives;
  EXPECT_TRUE(transfers.add(send).empty());
  EXPECT_TRUE(transfers.add(recv).empty());
  EXPECT_TRUE(collectives.add(send).empty());
  EXPECT_TRUE(collectives.add(recv).empty());
  EXPECT_EQ(collectives.pending(), 0u);
  // Nor are they a group's collectives the hang evidence counts.
  FaultDetector detector(2);
  detector.add(send);
  detector.add(recv);
  EXPECT_FALSE(detector.last_completed(0, "ring").has_value());
}

}  // namespace
}  // namespace rondo

#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <vector>

#include <nlohmann/json.hpp>

#include "comms/timing_recorder.h"

namespace rondo {
namespace {

TEST(TimingRecorder, RecordsStepsInBlocksWhenAskedTo) {
  for (int64_t step = 1; step <= 5; ++step) EXPECT_TRUE(recorded_step(step, 0));
  std::vector<bool> got;
  for (int64_t step = 1; step <= 7; ++step) got.push_back(recorded_step(step, 2));
  EXPECT_EQ(got, (std::vector<bool>{true, true, false, false, true, true, false}));
}

TEST(TimingRecorder, KeepsTheMostRecentRecordsInOrder) {
  TimingRecorder rec(4);
  for (int i = 0; i < 10; ++i) {
    auto scope = rec.begin(CollectiveOp::kAllreduce, static_cast<uint64_t>(i), 2);
  }
  const auto snap = rec.snapshot();
  ASSERT_EQ(snap.size(), 4u);
  EXPECT_EQ(snap.front().seq, 6u);
  EXPECT_EQ(snap.back().seq, 9u);
  EXPECT_EQ(snap.back().bytes, 9u);
  EXPECT_TRUE(snap.back().completed);
  EXPECT_EQ(rec.recorded(), 10u);
}

TEST(TimingRecorder, AggregatesStepsPerConnection) {
  TimingRecorder rec(8);
  {
    auto scope = rec.begin(CollectiveOp::kAllreduce, 100, 3);
    const auto t0 = std::chrono::steady_clock::now();
    scope.step(1, 2, 10, t0, t0 + std::chrono::microseconds(5));
    scope.step(1, 2, 10, t0, t0 + std::chrono::microseconds(7));
    scope.step(2, 1, 4, t0, t0 + std::chrono::microseconds(1));
  }
  const auto r = rec.snapshot().at(0);
  ASSERT_EQ(r.connections.size(), 2u);
  EXPECT_EQ(r.connections[0].steps, 2u);
  EXPECT_EQ(r.connections[0].bytes, 20u);
  EXPECT_EQ(r.connections[0].total_ns, 12000u);
  EXPECT_EQ(r.connections[0].max_ns, 7000u);
  EXPECT_GE(r.start_ns, r.enter_ns);
  EXPECT_GE(r.end_ns, r.start_ns);
  const auto j = TimingRecorder::to_json(rec.snapshot(), 3);
  EXPECT_EQ(j["rank"], 3);
  EXPECT_EQ(j["records"][0]["op"], "allreduce");
  EXPECT_EQ(j["records"][0]["connections"][1]["send_peer"], 2);
}

TEST(TimingRecorder, AnOpenRecordIsMarkedIncomplete) {
  TimingRecorder rec(2);
  auto scope = rec.begin(CollectiveOp::kAlltoall, 1, 2);
  EXPECT_FALSE(rec.snapshot().at(0).completed);  // what a timeout dump shows
  scope.end();
  EXPECT_TRUE(rec.snapshot().at(0).completed);
}

TEST(TimingRecorder, ACollectiveUnwoundByATimeoutStaysIncompleteNamingItsPeers) {
  TimingRecorder rec(2);
  try {
    auto scope = rec.begin(CollectiveOp::kAllreduce, 8, 2);
    scope.posted(1, 1);
    const auto t0 = std::chrono::steady_clock::now();
    scope.step(1, 1, 4, t0, t0);  // one exchange completed ...
    scope.posted(1, 0);           // ... the next one never does
    throw std::runtime_error("timed out");
  } catch (const std::runtime_error&) {
  }
  const auto r = rec.snapshot().at(0);
  EXPECT_FALSE(r.completed);
  EXPECT_GT(r.end_ns, 0);
  EXPECT_EQ(r.waiting_send_peer, 1);
  EXPECT_EQ(r.waiting_recv_peer, 0);
  EXPECT_EQ(TimingRecorder::to_json(rec.snapshot(), 0)["records"][0]["waiting_recv_peer"], 0);
}

TEST(TimingRecorder, ACompletedCollectiveWaitsForNobody) {
  TimingRecorder rec(2);
  {
    auto scope = rec.begin(CollectiveOp::kAllreduce, 8, 2);
    scope.posted(1, 1);
    EXPECT_EQ(rec.snapshot().at(0).waiting_recv_peer, 1);
    const auto t0 = std::chrono::steady_clock::now();
    scope.step(1, 1, 4, t0, t0);
  }
  EXPECT_TRUE(rec.snapshot().at(0).completed);
  EXPECT_EQ(rec.snapshot().at(0).waiting_recv_peer, -1);
  auto abandoned = rec.begin(CollectiveOp::kAllreduce, 8, 2);
  abandoned.abandon();
  EXPECT_FALSE(rec.snapshot().at(1).completed);
}

TEST(TimingRecorder, ATransferBeingWaitedForNamesItsPeer) {
  TimingRecorder rec(4);
  const int64_t posted = TimingRecorder::wall_ns() - 1000;
  {
    auto waiting = rec.begin_transfer_wait(CollectiveOp::kRecv, 64, 3, posted);
    const auto r = rec.snapshot().at(0);
    EXPECT_FALSE(r.completed);
    EXPECT_EQ(r.enter_ns, posted);
    EXPECT_EQ(r.waiting_recv_peer, 3);
    EXPECT_EQ(r.waiting_send_peer, -1);
    waiting.end_transfer(std::chrono::steady_clock::now());
  }
  const auto done = rec.snapshot().at(0);
  EXPECT_TRUE(done.completed);
  EXPECT_EQ(done.waiting_recv_peer, -1);
  ASSERT_EQ(done.connections.size(), 1u);
  EXPECT_EQ(done.connections[0].recv_peer, 3);
  try {
    auto waiting = rec.begin_transfer_wait(CollectiveOp::kSend, 64, 2, posted);
    throw std::runtime_error("timed out");
  } catch (const std::runtime_error&) {
  }
  EXPECT_FALSE(rec.snapshot().at(1).completed);
  EXPECT_EQ(rec.snapshot().at(1).waiting_send_peer, 2);
}

TEST(TimingRecorder, CapsConnectionsPerRecord) {
  TimingRecorder rec(1);
  {
    auto scope = rec.begin(CollectiveOp::kAlltoallv, 1, 1000);
    const auto t0 = std::chrono::steady_clock::now();
    for (int p = 0; p < 100; ++p) scope.step(p, p, 1, t0, t0);
  }
  const auto r = rec.snapshot().at(0);
  EXPECT_EQ(r.connections.size(), TimingRecorder::kMaxConnectionsPerRecord);
  EXPECT_EQ(r.dropped_connections, 100 - TimingRecorder::kMaxConnectionsPerRecord);
}

TEST(TimingRecorder, AScopeWhoseSlotWasReusedLeavesTheNewerRecordAlone) {
  TimingRecorder rec(1);
  auto older = rec.begin(CollectiveOp::kAllreduce, 1, 2);
  auto newer = rec.begin(CollectiveOp::kBroadcast, 2, 2);  // takes the only slot
  const auto t0 = std::chrono::steady_clock::now();
  older.posted(5, 6);
  older.step(5, 6, 64, t0, t0 + std::chrono::microseconds(3));
  older.end();
  auto r = rec.snapshot().at(0);
  EXPECT_EQ(r.seq, 1u);
  EXPECT_EQ(r.op, CollectiveOp::kBroadcast);
  EXPECT_FALSE(r.completed) << "closing the evicted scope marked the newer record completed";
  EXPECT_EQ(r.end_ns, 0);
  EXPECT_TRUE(r.connections.empty());
  EXPECT_EQ(r.waiting_send_peer, -1);
  newer.end();
  EXPECT_TRUE(rec.snapshot().at(0).completed);
}

TEST(TimingRecorder, ATransferWaitEvictedByOneFinishedTransferKeepsThatOne) {
  TimingRecorder rec(1);
  auto wait = rec.begin_transfer_wait(CollectiveOp::kRecv, 8, 3, TimingRecorder::wall_ns());
  rec.record_transfer(CollectiveOp::kSend, 16, 4, TimingRecorder::wall_ns(), TimingRecorder::wall_ns());
  wait.end_transfer(std::chrono::steady_clock::now());
  const auto r = rec.snapshot().at(0);
  EXPECT_EQ(r.op, CollectiveOp::kSend);
  ASSERT_EQ(r.connections.size(), 1u);
  EXPECT_EQ(r.connections[0].send_peer, 4);
}

TEST(TimingRecorder, ReportsEachRecordOnceWhenItHasClosed) {
  TimingRecorder rec(4);
  TimingRecorder::ReportCursor cursor;
  auto open = rec.begin(CollectiveOp::kAllreduce, 1, 2);
  { auto done = rec.begin(CollectiveOp::kBarrier, 0, 2); }
  auto first = rec.take_closed(cursor);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].seq, 1u);
  EXPECT_TRUE(rec.take_closed(cursor).empty()) << "nothing new, the open one still open";
  open.end();
  { auto later = rec.begin(CollectiveOp::kBroadcast, 0, 2); }
  const auto second = rec.take_closed(cursor);
  ASSERT_EQ(second.size(), 2u) << "the collective open at the first report reaches the next";
  EXPECT_EQ(second[0].seq, 0u);
  EXPECT_TRUE(second[0].completed);
  EXPECT_EQ(second[1].seq, 2u);
  EXPECT_TRUE(rec.take_closed(cursor).empty());
  EXPECT_TRUE(cursor.open.empty());
}

TEST(TimingRecorder, AnAbandonedRecordIsReportedAsNotCompleted) {
  TimingRecorder rec(2);
  TimingRecorder::ReportCursor cursor;
  auto scope = rec.begin(CollectiveOp::kAllreduce, 1, 2);
  EXPECT_TRUE(rec.take_closed(cursor).empty());
  scope.abandon();
  const auto r = rec.take_closed(cursor);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_FALSE(r[0].completed);
}

TEST(TimingRecorder, ARecordReusedBeforeItClosedIsNeverReported) {
  TimingRecorder rec(1);
  TimingRecorder::ReportCursor cursor;
  auto open = rec.begin(CollectiveOp::kAllreduce, 1, 2);
  EXPECT_TRUE(rec.take_closed(cursor).empty());
  rec.record_transfer(CollectiveOp::kSend, 4, 1, TimingRecorder::wall_ns(), TimingRecorder::wall_ns());
  open.end();
  const auto r = rec.take_closed(cursor);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].op, CollectiveOp::kSend);
  EXPECT_TRUE(cursor.open.empty());
}

}  // namespace
}  // namespace rondo

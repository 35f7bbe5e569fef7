#include <gtest/gtest.h>

#include <stdexcept>

#include <nlohmann/json.hpp>

#include "comms/timing_recorder.h"

namespace rondo {
namespace {

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

}  // namespace
}  // namespace rondo

// InProcessCommunicator: ranks as threads. rondo's collectives run over it as over MPI, splits
// make sub-communicators, and a receive nobody answers times out naming its peer.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <functional>
#include <thread>

#include "common/errors.h"
#include "comms/collectives.h"
#include "comms/in_process_communicator.h"
#include "comms/timing_recorder.h"

namespace rondo {
namespace {

// A ring step of the test's allreduce of 2^14 floats over two ranks moves half of them.
uint64_t v_bytes_half() { return (1u << 14) * sizeof(float) / 2; }

// Runs fn(rank's communicator) on one thread per rank; rethrows the first failure.
void run_ranks(int n, const std::function<void(Communicator&)>& fn) {
  auto world = InProcessCommunicator::create_world(n);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        fn(*world[static_cast<size_t>(r)]);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

TEST(InProcessCommunicator, RondosRingCollectivesRunOverIt) {
  run_ranks(4, [](Communicator& comm) {
    TimingRecorder recorder(16);
    Collectives coll(comm, &recorder);
    const int r = comm.rank();
    std::vector<float> v(10);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(r * 100 + static_cast<int>(i));
    coll.allreduce(v.data(), v.size(), DType::kFloat32, ReduceOp::kSum);
    for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], static_cast<float>(600 + 4 * static_cast<int>(i)));
    std::vector<int32_t> mine = {r, r * r}, all(8);
    coll.allgather(mine.data(), all.data(), 2, DType::kInt32);
    EXPECT_EQ(all, (std::vector<int32_t>{0, 0, 1, 1, 2, 4, 3, 9}));
    double b = r == 2 ? 3.25 : 0.0;
    coll.broadcast(&b, 1, DType::kFloat64, 2);
    EXPECT_EQ(b, 3.25);
    coll.barrier();
    // The ring's exchanges are timed per connection: to the next rank, from the previous.
    const auto first = recorder.snapshot().front();
    ASSERT_FALSE(first.connections.empty());
    EXPECT_EQ(first.connections.front().send_peer, (r + 1) % 4);
    EXPECT_EQ(first.connections.front().recv_peer, (r + 3) % 4);
  });
}

TEST(InProcessCommunicator, AGroupsRecordsNameWorldRanksAndLineUpAcrossMembers) {
  // Ranks 1 and 3 of four form a group; its records name peers by world rank, number the group's
  // collectives alike on both members, and time each exchange from its posting.
  std::vector<std::vector<CollectiveRecord>> records(4);
  run_ranks(4, [&](Communicator& world) {
    auto sub = world.split({1, 3});
    if (!sub) return;
    TimingRecorder recorder(8);
    Collectives coll(*sub, &recorder);
    coll.set_group("dp@1", {1, 3});
    std::vector<float> v(1 << 14, 1.0f);
    for (int k = 0; k < 3; ++k) coll.allreduce(v.data(), v.size(), DType::kFloat32, ReduceOp::kSum);
    records[static_cast<size_t>(world.rank())] = recorder.snapshot();
  });
  for (int r : {1, 3}) {
    const auto& mine = records[static_cast<size_t>(r)];
    ASSERT_EQ(mine.size(), 3u);
    for (uint64_t k = 0; k < 3; ++k) {
      const auto& rec = mine[k];
      EXPECT_EQ(rec.group, "dp@1");
      EXPECT_EQ(rec.group_seq, k);
      ASSERT_EQ(rec.exchanges.size(), 2u);  // 2 (n - 1) ring steps
      for (const auto& e : rec.exchanges) {
        EXPECT_EQ(e.send_peer, 4 - r);
        EXPECT_EQ(e.recv_peer, 4 - r);
        EXPECT_EQ(e.bytes, v_bytes_half());
        EXPECT_LE(e.posted_ns, e.recv_ns);
        EXPECT_LE(e.recv_ns, e.done_ns);
        EXPECT_GE(e.posted_ns, rec.enter_ns);
        EXPECT_LE(e.done_ns, rec.end_ns);
      }
      EXPECT_EQ(rec.connections.front().send_peer, 4 - r);
    }
  }
}

TEST(InProcessCommunicator, AnAllToAllsReceiveIsTimedAtTheLastPollThatFoundItUnfinished) {
  // Rank 0 posts an all-to-all and computes for 80 ms before it polls: its peer's rows arrived long
  // before, so the link is not charged for the computation. Then rank 1 posts its sends 100 ms
  // after rank 0 posted, while rank 0 waits polling: the receive is timed as late as it was.
  using namespace std::chrono;
  std::vector<std::vector<CollectiveRecord>> records(2);
  std::atomic<bool> rank0_posted{false};
  run_ranks(2, [&](Communicator& comm) {
    TimingRecorder recorder(8);
    Collectives coll(comm, &recorder);
    coll.set_group("ep@0", {0, 1});
    std::vector<float> send(64, static_cast<float>(comm.rank())), recv(64);
    const std::vector<size_t> counts = {32, 32};
    for (int round = 0; round < 2; ++round) {
      if (round == 1 && comm.rank() == 1) {
        while (!rank0_posted) std::this_thread::yield();
        std::this_thread::sleep_for(milliseconds(100));
      }
      auto op = coll.start_alltoallv(send.data(), counts, recv.data(), counts, DType::kFloat32);
      if (round == 0 && comm.rank() == 0) std::this_thread::sleep_for(milliseconds(80));
      if (round == 1 && comm.rank() == 0) rank0_posted = true;
      op->wait();
      EXPECT_EQ(recv[8], 0.0f);  // block j came from rank j
      EXPECT_EQ(recv[40], 1.0f);
    }
    records[static_cast<size_t>(comm.rank())] = recorder.snapshot();
  });
  const auto received_after_ms = [&](size_t round) {
    const auto& rec = records[0].at(round);
    const auto e = std::find_if(rec.exchanges.begin(), rec.exchanges.end(),
                                [](const ExchangeTiming& x) { return x.recv_peer == 1; });
    EXPECT_NE(e, rec.exchanges.end());
    return e == rec.exchanges.end() ? -1.0 : static_cast<double>(e->recv_ns - e->posted_ns) * 1e-6;
  };
  EXPECT_LT(received_after_ms(0), 40.0);  // it arrived while rank 0 computed
  EXPECT_GE(received_after_ms(1), 50.0);  // it came late; rank 0 polled all along
}

TEST(InProcessCommunicator, APausedRecorderRecordsNothingAndTheGroupCountsOnWhereItLeftOff) {
  run_ranks(2, [](Communicator& comm) {
    TimingRecorder recorder(8);
    Collectives coll(comm, &recorder);
    coll.set_group("dp", {});
    double v = 1;
    coll.allreduce(&v, 1, DType::kFloat64, ReduceOp::kSum);
    recorder.set_recording(false);  // every member pauses between the same collectives
    coll.allreduce(&v, 1, DType::kFloat64, ReduceOp::kSum);
    coll.barrier();
    EXPECT_EQ(v, 4);  // the collectives still ran
    EXPECT_EQ(recorder.recorded(), 1u);
    recorder.set_recording(true);
    coll.allreduce(&v, 1, DType::kFloat64, ReduceOp::kSum);
    const auto records = recorder.snapshot();
    ASSERT_EQ(records.size(), 2u);
    EXPECT_EQ(records[1].group_seq, 1u);  // lines up with the other member's second record
    EXPECT_EQ(records[1].group, "dp");
  });
}

TEST(InProcessCommunicator, TheRingAllreduceFollowsItsRingOrder) {
  // Ring 0 -> 2 -> 1 -> 3 -> 0: the same sums, each member exchanging with its ring neighbours.
  const std::vector<int> order = {0, 2, 1, 3};
  run_ranks(4, [&](Communicator& comm) {
    TimingRecorder recorder(4);
    Collectives coll(comm, &recorder);
    coll.set_ring_order(order);
    const int r = comm.rank();
    std::vector<double> v(1000);
    for (size_t i = 0; i < v.size(); ++i) v[i] = r + 0.25 * static_cast<double>(i);
    coll.allreduce(v.data(), v.size(), DType::kFloat64, ReduceOp::kSum);
    for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], 6 + static_cast<double>(i));
    const auto pos = static_cast<size_t>(std::find(order.begin(), order.end(), r) - order.begin());
    const auto c = recorder.snapshot().front().connections.front();
    EXPECT_EQ(c.send_peer, order[(pos + 1) % 4]);
    EXPECT_EQ(c.recv_peer, order[(pos + 3) % 4]);
    EXPECT_THROW(coll.set_ring_order({0, 1, 1, 3}), CommError);
  });
}

TEST(InProcessCommunicator, NativeCollectivesAndSplits) {
  run_ranks(4, [](Communicator& comm) {
    const int r = comm.rank();
    double x = r;
    comm.native_allreduce(&x, 1, DType::kFloat64, ReduceOp::kMax);
    EXPECT_EQ(x, 3.0);
    std::vector<int64_t> out(4), in = {r * 10 + 0, r * 10 + 1, r * 10 + 2, r * 10 + 3};
    comm.native_alltoall(in.data(), out.data(), sizeof(int64_t));
    EXPECT_EQ(out, (std::vector<int64_t>{r, 10 + r, 20 + r, 30 + r}));
    // Two data-parallel groups, {0, 2} and {1, 3}: every rank takes part in both splits.
    std::unique_ptr<Communicator> mine;
    for (const auto& group : {std::vector<int>{0, 2}, std::vector<int>{1, 3}}) {
      if (auto sub = comm.split(group)) mine = std::move(sub);
    }
    ASSERT_NE(mine, nullptr);
    EXPECT_EQ(mine->size(), 2);
    EXPECT_EQ(mine->rank(), r / 2);
    int64_t sum = r;
    Collectives(*mine, nullptr).allreduce(&sum, 1, DType::kInt64, ReduceOp::kSum);
    EXPECT_EQ(sum, r % 2 == 0 ? 0 + 2 : 1 + 3);
    comm.native_barrier();
  });
}

TEST(InProcessCommunicator, NonBlockingReceivesCompleteWhenTheMessageArrives) {
  run_ranks(2, [](Communicator& comm) {
    int value = -1;
    if (comm.rank() == 1) {
      auto req = comm.irecv(&value, sizeof(value), 0, 5);
      int go = 1;
      comm.send(&go, sizeof(go), 0, 6);  // rank 0 sends only after this
      req->wait(std::chrono::seconds(10));
      EXPECT_EQ(value, 42);
    } else {
      int go = 0;
      comm.recv(&go, sizeof(go), 1, 6);
      value = 42;
      comm.isend(&value, sizeof(value), 1, 5)->wait(std::chrono::seconds(10));
    }
  });
}

TEST(InProcessCommunicator, AReceiveNobodyAnswersTimesOutNamingItsPeer) {
  auto world = InProcessCommunicator::create_world(2);
  world[0]->set_timeout(std::chrono::milliseconds(50));
  int x = 0;
  try {
    world[0]->recv(&x, sizeof(x), 1, 0);
    FAIL() << "no timeout";
  } catch (const TimeoutError& e) {
    EXPECT_EQ(e.peer(), 1);
    EXPECT_NE(std::string(e.what()).find("in-process recv"), std::string::npos) << e.what();
  }
  EXPECT_THROW(world[0]->send(&x, sizeof(x), 2, 0), CommError);
}

}  // namespace
}  // namespace rondo

// rondo's collectives (built on point-to-point) against MPI's own, on random data and odd sizes.
// Run under mpirun with 1..5 ranks; every rank runs every test, rank 0 reports.
#include <gtest/gtest.h>

#include <mpi.h>
#include <thread>

#include <cmath>
#include <random>

#include "common/errors.h"
#include "comms/collectives.h"
#include "comms/mpi/mpi_communicator.h"
#include "comms/timing_recorder.h"
#include "tests/mpi/mpi_test_main.h"

namespace rondo {
namespace {

const std::vector<size_t> kCounts = {0, 1, 2, 3, 5, 7, 13, 1000, 4099, 65537, (1u << 20) + 3};

template <typename T>
std::vector<T> random_vector(size_t n, int seed) {
  std::mt19937_64 gen(static_cast<uint64_t>(seed) * 7919u + n);
  std::vector<T> v(n);
  if constexpr (std::is_floating_point_v<T>) {
    std::uniform_real_distribution<T> dist(-1, 1);
    for (auto& x : v) x = dist(gen);
  } else {
    std::uniform_int_distribution<T> dist(-1000000, 1000000);
    for (auto& x : v) x = dist(gen);
  }
  return v;
}

TEST(Collectives, RingAllreduceFloatSumMatchesMpi) {
  TimingRecorder rec(64);
  Collectives coll(*g_world, &rec);
  for (size_t n : kCounts) {
    auto ours = random_vector<float>(n, g_world->rank());
    auto theirs = ours;
    coll.allreduce(ours.data(), n, DType::kFloat32, ReduceOp::kSum);
    MPI_Allreduce(MPI_IN_PLACE, theirs.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_NEAR(ours[i], theirs[i], 1e-5f * (1.0f + std::fabs(theirs[i]))) << "n=" << n << " i=" << i;
    }
  }
}

TEST(Collectives, RingAllreduceIntegersAndMinMaxAreExact) {
  Collectives coll(*g_world, nullptr);
  for (size_t n : kCounts) {
    auto ours = random_vector<int64_t>(n, g_world->rank() + 17);
    auto theirs = ours;
    coll.allreduce(ours.data(), n, DType::kInt64, ReduceOp::kSum);
    MPI_Allreduce(MPI_IN_PLACE, theirs.data(), static_cast<int>(n), MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    ASSERT_EQ(ours, theirs) << "n=" << n;
    for (auto [op, mop] : {std::pair{ReduceOp::kMax, MPI_MAX}, {ReduceOp::kMin, MPI_MIN}}) {
      auto a = random_vector<double>(n, g_world->rank() + 3);
      auto b = a;
      coll.allreduce(a.data(), n, DType::kFloat64, op);
      MPI_Allreduce(MPI_IN_PLACE, b.data(), static_cast<int>(n), MPI_DOUBLE, mop, MPI_COMM_WORLD);
      ASSERT_EQ(a, b) << "n=" << n;
    }
  }
}

TEST(Collectives, NativeAllreducePassesThrough) {
  Collectives coll(*g_world, nullptr);
  auto ours = random_vector<int64_t>(1001, g_world->rank());
  auto theirs = ours;
  coll.native_allreduce(ours.data(), ours.size(), DType::kInt64, ReduceOp::kSum);
  MPI_Allreduce(MPI_IN_PLACE, theirs.data(), 1001, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  EXPECT_EQ(ours, theirs);
}

TEST(Collectives, ReduceScatterAndAllgatherMatchMpi) {
  Collectives coll(*g_world, nullptr);
  const int n = g_world->size();
  for (size_t count : {size_t{0}, size_t{1}, size_t{3}, size_t{1000}, size_t{4097}}) {
    auto send = random_vector<int64_t>(count * static_cast<size_t>(n), g_world->rank() + 5);
    std::vector<int64_t> ours(count), theirs(count);
    coll.reduce_scatter(send.data(), ours.data(), count, DType::kInt64, ReduceOp::kSum);
    MPI_Reduce_scatter_block(send.data(), theirs.data(), static_cast<int>(count), MPI_INT64_T, MPI_SUM,
                             MPI_COMM_WORLD);
    ASSERT_EQ(ours, theirs) << "count=" << count;

    auto block = random_vector<float>(count, g_world->rank() + 9);
    std::vector<float> g1(count * static_cast<size_t>(n)), g2(count * static_cast<size_t>(n));
    coll.allgather(block.data(), g1.data(), count, DType::kFloat32);
    MPI_Allgather(block.data(), static_cast<int>(count), MPI_FLOAT, g2.data(), static_cast<int>(count),
                  MPI_FLOAT, MPI_COMM_WORLD);
    ASSERT_EQ(g1, g2) << "count=" << count;
  }
}

TEST(Collectives, AlltoallAndAlltoallvMatchMpi) {
  Collectives coll(*g_world, nullptr);
  const int n = g_world->size(), r = g_world->rank();
  for (size_t count : {size_t{0}, size_t{1}, size_t{7}, size_t{1025}}) {
    auto send = random_vector<int32_t>(count * static_cast<size_t>(n), r + 11);
    std::vector<int32_t> ours(send.size()), theirs(send.size());
    coll.alltoall(send.data(), ours.data(), count, DType::kInt32);
    MPI_Alltoall(send.data(), static_cast<int>(count), MPI_INT32_T, theirs.data(), static_cast<int>(count),
                 MPI_INT32_T, MPI_COMM_WORLD);
    ASSERT_EQ(ours, theirs) << "count=" << count;
  }
  // Uneven blocks: rank a sends (a*7 + b*3) % 11 elements to rank b.
  auto block = [](int a, int b) { return static_cast<size_t>((a * 7 + b * 3) % 11); };
  std::vector<size_t> sc(static_cast<size_t>(n)), rc(static_cast<size_t>(n));
  std::vector<int> isc(static_cast<size_t>(n)), irc(static_cast<size_t>(n)), sd(static_cast<size_t>(n)),
      rd(static_cast<size_t>(n));
  size_t stotal = 0, rtotal = 0;
  for (int j = 0; j < n; ++j) {
    const auto uj = static_cast<size_t>(j);
    sc[uj] = block(r, j);
    rc[uj] = block(j, r);
    isc[uj] = static_cast<int>(sc[uj]);
    irc[uj] = static_cast<int>(rc[uj]);
    sd[uj] = static_cast<int>(stotal);
    rd[uj] = static_cast<int>(rtotal);
    stotal += sc[uj];
    rtotal += rc[uj];
  }
  auto send = random_vector<double>(stotal, r + 23);
  std::vector<double> ours(rtotal), theirs(rtotal);
  coll.alltoallv(send.data(), sc, ours.data(), rc, DType::kFloat64);
  MPI_Alltoallv(send.data(), isc.data(), sd.data(), MPI_DOUBLE, theirs.data(), irc.data(), rd.data(),
                MPI_DOUBLE, MPI_COMM_WORLD);
  EXPECT_EQ(ours, theirs);

  // Started, two at once on two communicators (a dispatch and a combine in flight), advanced by
  // progress() and recorded with one step per connection.
  std::vector<int> all(static_cast<size_t>(n));
  for (int j = 0; j < n; ++j) all[static_cast<size_t>(j)] = j;
  auto first = g_world->split(all), second = g_world->split(all);
  TimingRecorder recorder(16);
  Collectives a(*first, &recorder), b(*second, nullptr);
  std::vector<double> started(rtotal), back(stotal);
  auto one = a.start_alltoallv(send.data(), sc, started.data(), rc, DType::kFloat64);
  auto two = b.start_alltoallv(theirs.data(), rc, back.data(), sc, DType::kFloat64);
  for (bool done_one = false, done_two = false; !(done_one && done_two);) {
    done_one = done_one || one->progress();
    done_two = done_two || two->progress();
  }
  EXPECT_EQ(started, theirs);
  EXPECT_EQ(back, send) << "the reverse exchange brings every block home";
  const auto records = recorder.snapshot();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].op, CollectiveOp::kAlltoallv);
  EXPECT_TRUE(records[0].completed);
  EXPECT_EQ(static_cast<int>(records[0].exchanges.size()), n - 1) << "one timed exchange per connection";
}

TEST(Collectives, BroadcastFromEveryRootAndBarrier) {
  Collectives coll(*g_world, nullptr);
  for (int root = 0; root < g_world->size(); ++root) {
    auto expect = random_vector<int64_t>(777, root + 100);
    std::vector<int64_t> data = g_world->rank() == root ? expect : std::vector<int64_t>(777, 0);
    coll.broadcast(data.data(), data.size(), DType::kInt64, root);
    ASSERT_EQ(data, expect) << "root=" << root;
    coll.barrier();
  }
}

TEST(Collectives, RecorderSeesEveryRingConnection) {
  const int n = g_world->size(), r = g_world->rank();
  TimingRecorder rec(8);
  Collectives coll(*g_world, &rec);
  std::vector<float> data(4096, 1.0f);
  coll.allreduce(data.data(), data.size(), DType::kFloat32, ReduceOp::kSum);
  EXPECT_EQ(data[0], static_cast<float>(n));
  const auto records = rec.snapshot();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_TRUE(records[0].completed);
  EXPECT_EQ(records[0].group_size, n);
  if (n > 1) {
    ASSERT_EQ(records[0].connections.size(), 1u);
    EXPECT_EQ(records[0].connections[0].send_peer, (r + 1) % n);
    EXPECT_EQ(records[0].connections[0].recv_peer, (r + n - 1) % n);
    EXPECT_EQ(records[0].connections[0].steps, static_cast<uint32_t>(2 * (n - 1)));
  }
}

TEST(Collectives, AMissingPeerTimesOutNamingIt) {
  if (g_world->size() < 2) GTEST_SKIP() << "needs two ranks";
  MpiCommunicator comm(MPI_COMM_WORLD);
  comm.set_timeout(std::chrono::duration<double>(0.3));
  if (comm.rank() == 0) {
    int value = 0;
    try {
      comm.recv(&value, sizeof(value), 1, /*tag nobody sends=*/777);
      FAIL() << "recv returned";
    } catch (const TimeoutError& e) {
      EXPECT_EQ(e.rank(), 0);
      EXPECT_EQ(e.peer(), 1);
      EXPECT_NE(std::string(e.what()).find("did not complete within"), std::string::npos);
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(Collectives, ASplitThatARankNeverJoinsTimesOut) {
  if (g_world->size() < 2) GTEST_SKIP() << "needs two ranks";
  MpiCommunicator comm(MPI_COMM_WORLD);
  comm.set_timeout(std::chrono::duration<double>(0.3));
  const int last = comm.size() - 1;
  if (comm.rank() != last) {
    try {
      comm.split({0, last});
      FAIL() << "split returned without rank " << last;
    } catch (const TimeoutError& e) {
      EXPECT_NE(std::string(e.what()).find("did not complete within"), std::string::npos) << e.what();
    }
  } else {
    // Late, after the others gave up: completes their barrier so that MPI is left clean.
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    comm.native_barrier();
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace rondo

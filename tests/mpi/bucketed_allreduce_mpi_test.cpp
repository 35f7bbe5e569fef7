// BucketedAllreduce on real ranks: the bucketed, overlapped sum equals MPI_Allreduce of the whole
// buffer whatever order (and from whatever thread) each rank marks its parameters ready, with
// parameters never marked, over repeated steps, with the native allreduce and an emulated slow
// link; and a rank that never joins makes finish() fail within the timeout instead of hanging.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "common/errors.h"
#include "comms/bucketed_allreduce.h"
#include "comms/mpi/mpi_communicator.h"
#include "tests/mpi/mpi_test_main.h"

namespace rondo {
namespace {

std::unique_ptr<Communicator> private_comm() {
  std::vector<int> all(static_cast<size_t>(g_world->size()));
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
  return g_world->split(all);
}

void check_steps(BucketedAllreduce::Options options, const std::vector<size_t>& params, size_t cap_bytes,
                 int steps, bool skip_some) {
  const size_t total = std::accumulate(params.begin(), params.end(), size_t{0}) + 1;
  std::vector<float> data(total);
  TimingRecorder recorder(256);
  BucketedAllreduce reducer(private_comm(), &recorder, data.data(),
                            plan_gradient_buckets(params, 1, sizeof(float), cap_bytes, cap_bytes / 4),
                            options);
  std::mt19937 gen(static_cast<unsigned>(1000 + g_world->rank()));
  for (int step = 0; step < steps; ++step) {
    std::uniform_real_distribution<float> dist(-1, 1);
    for (auto& x : data) x = dist(gen);
    std::vector<float> expected = data;
    MPI_Allreduce(MPI_IN_PLACE, expected.data(), static_cast<int>(total), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);

    // Each rank marks its parameters in its own random order, and some ranks skip a few
    // parameters altogether.
    std::vector<size_t> order(params.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::shuffle(order.begin(), order.end(), gen);
    if (skip_some && g_world->rank() % 2 == 1) order.resize(order.size() / 2);
    reducer.arm();
    for (size_t p : order) reducer.mark_ready(p);
    EXPECT_GE(reducer.finish(), 0.0);
    for (size_t i = 0; i < total; ++i) {
      ASSERT_NEAR(data[i], expected[i], 1e-5f * (1.0f + std::fabs(expected[i])))
          << "step " << step << " i " << i;
    }
  }
  if (g_world->size() > 1) {
    EXPECT_GE(recorder.recorded(), reducer.buckets().size());
  }
}

const std::vector<size_t> kParams = {300, 7, 5000, 1, 64, 64, 12000, 3, 900, 2500};

TEST(BucketedAllreduce, RingEqualsMpiAllreduce) { check_steps({}, kParams, 4096, 5, false); }

TEST(BucketedAllreduce, ParametersNeverMarkedStillReduce) { check_steps({}, kParams, 4096, 3, true); }

TEST(BucketedAllreduce, OneBucket) { check_steps({}, kParams, 0, 2, false); }

TEST(BucketedAllreduce, NativeAllreduce) {
  BucketedAllreduce::Options o;
  o.native = true;
  check_steps(o, kParams, 8192, 3, false);
}

TEST(BucketedAllreduce, EmulatedSlowLink) {
  BucketedAllreduce::Options o;
  o.emulated_link_bps = 50e6;
  check_steps(o, kParams, 16384, 2, false);
}

TEST(BucketedAllreduce, MisuseIsRefused) {
  std::vector<float> data(10);
  BucketedAllreduce reducer(private_comm(), nullptr, data.data(), plan_gradient_buckets({9}, 1, 4, 0, 0), {});
  EXPECT_THROW(reducer.finish(), Error);  // finish() without arm()
  reducer.arm();
  EXPECT_THROW(reducer.arm(), Error);  // arm() twice
  reducer.mark_ready(0);
  reducer.mark_ready(0);   // a second mark of the same parameter is ignored
  reducer.mark_ready(99);  // an unknown parameter is ignored
  reducer.finish();
}

// Last: it leaves unmatched messages on the reducer's own communicator, nowhere else.
TEST(BucketedAllreduce, AbsentPeerTimesOut) {
  if (g_world->size() < 2) GTEST_SKIP() << "needs two ranks";
  std::vector<float> data(1000);
  auto comm = private_comm();
  comm->set_timeout(std::chrono::duration<double>(0.5));
  BucketedAllreduce reducer(std::move(comm), nullptr, data.data(), plan_gradient_buckets({999}, 1, 4, 0, 0),
                            {});
  if (g_world->rank() == 0) {
    reducer.arm();
    reducer.mark_ready(0);
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_THROW(reducer.finish(), CommError);
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 30.0);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace rondo

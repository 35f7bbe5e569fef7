// rondo's ring allreduce vs MPI_Allreduce, side by side in one run, 4 KiB to 64 MiB of float32.
// Each size alternates the two implementations over several rounds and reports the median
// time, the algorithm bandwidth (bytes / time) and the ratio ours/MPI in throughput. It also
// measures the flight recorder's cost: the same small allreduce with recording on and off.
//   mpirun -np N build/bench/rondo_allreduce_bench
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "comms/collectives.h"
#include "comms/mpi/mpi_communicator.h"

namespace {

using clock_type = std::chrono::steady_clock;

template <typename F>
double median_seconds(F&& body, int reps) {
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = clock_type::now();
    body();
    double t = std::chrono::duration<double>(clock_type::now() - t0).count();
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);  // slowest rank
    times.push_back(t);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  rondo::MpiRuntime mpi(&argc, &argv);
  auto world = rondo::MpiCommunicator::world();
  rondo::TimingRecorder recorder(1024);
  rondo::Collectives ours(*world, &recorder);
  const bool root = world->rank() == 0;
  if (root) {
    std::printf("ranks %d\n%10s %12s %12s %12s %12s %8s\n", world->size(), "bytes", "ring_ms", "mpi_ms",
                "ring_GB/s", "mpi_GB/s", "ratio");
  }
  for (size_t bytes = 4096; bytes <= (64u << 20); bytes *= 4) {
    const size_t count = bytes / sizeof(float);
    std::vector<float> a(count, 1.0f), b(count, 1.0f);
    const int reps = bytes <= (1u << 20) ? 50 : (bytes <= (16u << 20) ? 10 : 5);
    double ring_total = 0, mpi_total = 0;
    // Alternate the two so that machine noise hits both alike.
    for (int round = 0; round < 3; ++round) {
      ring_total += median_seconds(
          [&] { ours.allreduce(a.data(), count, rondo::DType::kFloat32, rondo::ReduceOp::kSum); }, reps);
      mpi_total += median_seconds(
          [&] {
            MPI_Allreduce(MPI_IN_PLACE, b.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                          MPI_COMM_WORLD);
          },
          reps);
    }
    const double ring = ring_total / 3, native = mpi_total / 3;
    if (root) {
      std::printf("%10zu %12.4f %12.4f %12.3f %12.3f %8.2f\n", bytes, ring * 1e3, native * 1e3,
                  bytes / ring / 1e9, bytes / native / 1e9, native / ring);
    }
  }

  // Flight-recorder overhead on a latency-bound allreduce (64 floats), interleaved on/off.
  rondo::Collectives unrecorded(*world, nullptr);
  std::vector<float> small(64, 1.0f);
  double on = 0, off = 0;
  const int iters = 2000;
  for (int round = 0; round < 5; ++round) {
    on += median_seconds(
        [&] {
          for (int i = 0; i < iters; ++i)
            ours.allreduce(small.data(), 64, rondo::DType::kFloat32, rondo::ReduceOp::kSum);
        },
        3);
    off += median_seconds(
        [&] {
          for (int i = 0; i < iters; ++i)
            unrecorded.allreduce(small.data(), 64, rondo::DType::kFloat32, rondo::ReduceOp::kSum);
        },
        3);
  }
  if (root) {
    std::printf("recorder: 256-byte allreduce %.2f us with recording, %.2f us without (%.1f%%)\n",
                on / 5 / iters * 1e6, off / 5 / iters * 1e6, (on / off - 1) * 100);
  }
  return 0;
}

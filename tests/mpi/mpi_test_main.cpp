#include "tests/mpi/mpi_test_main.h"

#include <gtest/gtest.h>
#include <mpi.h>

namespace rondo {
std::unique_ptr<MpiCommunicator> g_world;
}  // namespace rondo

int main(int argc, char** argv) {
  rondo::MpiRuntime mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  rondo::g_world = rondo::MpiCommunicator::world();
  rondo::g_world->set_timeout(std::chrono::duration<double>(60.0));
  if (rondo::g_world->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS();
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  rondo::g_world.reset();
  return failed;
}

// Shared by rondo's MPI test binaries: their main() (mpi_test_main.cpp) starts MPI, opens
// g_world over every rank (60 s timeout), lets only rank 0 print, and exits with the worst
// result over all ranks.
#pragma once

#include <memory>

#include "comms/mpi/mpi_communicator.h"

namespace rondo {

extern std::unique_ptr<MpiCommunicator> g_world;

}  // namespace rondo

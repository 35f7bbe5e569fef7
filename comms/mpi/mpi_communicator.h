// MpiCommunicator: the Open MPI backend of Communicator. Point-to-point operations are
// non-blocking requests polled against the deadline, so every wait ends in TimeoutError rather
// than a hang. MpiRuntime owns MPI_Init/MPI_Finalize for the process.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include "comms/communicator.h"

namespace rondo {

// Throws CommError with file:line, the call and MPI's error string if `call` fails.
#define RONDO_MPI_CHECK(rank, call) ::rondo::mpi_check((call), #call, __FILE__, __LINE__, (rank))
void mpi_check(int code, const char* call, const char* file, int line, int rank);

class MpiRuntime {
 public:
  // Initialises MPI (MPI_THREAD_MULTIPLE when available) unless already initialised.
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;
  int thread_level() const { return provided_; }
  // Whether this MPI reads and writes GPU memory itself (Open MPI built with CUDA support, asked
  // at run time); false where the library cannot say.
  static bool cuda_aware();

 private:
  bool owns_ = false;
  int provided_ = 0;
};

class MpiCommunicator : public Communicator {
 public:
  // Wraps a duplicate of `comm`; errors are returned (MPI_ERRORS_RETURN), never fatal.
  explicit MpiCommunicator(MPI_Comm comm);
  ~MpiCommunicator() override;

  static std::unique_ptr<MpiCommunicator> world() {
    return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend_name() const override { return "mpi"; }
  bool host_buffers() const override { return true; }
  MPI_Comm handle() const { return comm_; }

  std::unique_ptr<CommRequest> isend(const void* data, size_t bytes, int peer, int tag) override;
  std::unique_ptr<CommRequest> irecv(void* data, size_t bytes, int peer, int tag) override;
  std::unique_ptr<CommRequest> native_iallreduce(void* data, size_t count, DType type, ReduceOp op) override;

  void send(const void* data, size_t bytes, int peer, int tag) override;
  void recv(void* data, size_t bytes, int peer, int tag) override;
  void sendrecv(const void* send_data, size_t send_bytes, int dst, void* recv_data, size_t recv_bytes,
                int src, int tag) override;

  void native_allreduce(void* data, size_t count, DType type, ReduceOp op) override;
  void native_alltoall(const void* send_data, void* recv_data, size_t bytes_per_rank) override;
  void native_barrier() override;

  std::unique_ptr<Communicator> split(const std::vector<int>& ranks) override;

 private:
  // Polls the requests until all complete or the deadline passes; then throws, after cancelling
  // them when they are point-to-point (a collective cannot be cancelled).
  void wait_all(MPI_Request* requests, int count, int peer, const char* what, size_t bytes,
                bool collective = false);

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace rondo

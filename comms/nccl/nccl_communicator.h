// NcclCommunicator: the NCCL backend of Communicator, for GPU buffers (host_buffers() is false,
// so rondo's host-side ring collectives refuse it and the native NCCL collectives are used).
// Communicators are non-blocking (ncclConfig_t.blocking = 0): creation (init, split) and every
// operation are polled against the deadline -- the operation's enqueueing, then the
// communicator's CUDA stream; on timeout the NCCL communicator is aborted and TimeoutError thrown. Built only
// when CMake finds CUDA and NCCL; never run in CI (no GPU there).
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <memory>
#include <string>

#include "comms/communicator.h"

namespace rondo {

#define RONDO_NCCL_CHECK(rank, call) ::rondo::nccl_check((call), #call, __FILE__, __LINE__, (rank))
#define RONDO_CUDA_CHECK(rank, call) ::rondo::cuda_check((call), #call, __FILE__, __LINE__, (rank))
void nccl_check(ncclResult_t result, const char* call, const char* file, int line, int rank);
void cuda_check(cudaError_t result, const char* call, const char* file, int line, int rank);

class NcclCommunicator : public Communicator {
 public:
  // Collective over `bootstrap` (any host communicator, e.g. MPI world): rank 0 creates the NCCL
  // unique id and sends it to the others. `device` is the CUDA device of this rank.
  NcclCommunicator(Communicator& bootstrap, int device);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend_name() const override { return "nccl"; }
  bool host_buffers() const override { return false; }
  cudaStream_t stream() const { return stream_; }

  // NCCL has no tags: messages between a pair are matched in issue order; `tag` is ignored.
  void send(const void* data, size_t bytes, int peer, int tag) override;
  void recv(void* data, size_t bytes, int peer, int tag) override;
  void sendrecv(const void* send_data, size_t send_bytes, int dst, void* recv_data, size_t recv_bytes,
                int src, int tag) override;

  void native_allreduce(void* data, size_t count, DType type, ReduceOp op) override;
  void native_alltoall(const void* send_data, void* recv_data, size_t bytes_per_rank) override;
  void native_barrier() override;

  std::unique_ptr<Communicator> split(const std::vector<int>& ranks) override;

 private:
  NcclCommunicator(ncclComm_t comm, int device, cudaStream_t stream);
  // Waits until NCCL has enqueued the operation (the communicators are non-blocking), then for
  // the stream, within the deadline; aborts the communicator and throws on timeout.
  void wait(const char* what, int peer, size_t bytes);
  // Waits until `comm` (being created: init or split) is ready, within the deadline; aborts it
  // and throws TimeoutError naming `what` on timeout, CommError on an NCCL error.
  void wait_ready(ncclComm_t comm, const char* what);

  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int device_ = 0;
  int rank_ = 0;
  int size_ = 1;
  int* barrier_buffer_ = nullptr;  // one device int for native_barrier
};

}  // namespace rondo

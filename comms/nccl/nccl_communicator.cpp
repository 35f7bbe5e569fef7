#include "comms/nccl/nccl_communicator.h"

#include <sched.h>

#include <chrono>
#include <sstream>

#include "common/errors.h"

namespace rondo {

void nccl_check(ncclResult_t result, const char* call, const char* file, int line, int rank) {
  if (result == ncclSuccess || result == ncclInProgress) return;
  std::ostringstream ss;
  ss << call << " failed at " << file << ":" << line << ": " << ncclGetErrorString(result);
  throw CommError(rank, -1, ss.str());
}

void cuda_check(cudaError_t result, const char* call, const char* file, int line, int rank) {
  if (result == cudaSuccess) return;
  std::ostringstream ss;
  ss << call << " failed at " << file << ":" << line << ": " << cudaGetErrorString(result);
  throw CommError(rank, -1, ss.str());
}

namespace {

ncclDataType_t to_nccl(DType t) {
  switch (t) {
    case DType::kFloat32:
      return ncclFloat32;
    case DType::kFloat64:
      return ncclFloat64;
    case DType::kInt32:
      return ncclInt32;
    case DType::kInt64:
      return ncclInt64;
  }
  return ncclUint8;
}

ncclRedOp_t to_nccl(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
  }
  return ncclSum;
}

}  // namespace

NcclCommunicator::NcclCommunicator(Communicator& bootstrap, int device)
    : device_(device), rank_(bootstrap.rank()), size_(bootstrap.size()) {
  set_timeout(bootstrap.timeout());
  RONDO_CUDA_CHECK(rank_, cudaSetDevice(device_));
  ncclUniqueId id;
  constexpr int kTagUniqueId = 4242;
  if (rank_ == 0) {
    RONDO_NCCL_CHECK(rank_, ncclGetUniqueId(&id));
    for (int r = 1; r < size_; ++r) bootstrap.send(&id, sizeof(id), r, kTagUniqueId);
  } else {
    bootstrap.recv(&id, sizeof(id), 0, kTagUniqueId);
  }
  // Non-blocking, so that a rank that never joins is a TimeoutError, not a hang.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  RONDO_NCCL_CHECK(rank_, ncclCommInitRankConfig(&comm_, size_, id, rank_, &config));
  wait_ready(comm_, "ncclCommInitRankConfig");
  RONDO_CUDA_CHECK(rank_, cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  RONDO_CUDA_CHECK(rank_, cudaMalloc(reinterpret_cast<void**>(&barrier_buffer_), sizeof(int)));
}

NcclCommunicator::NcclCommunicator(ncclComm_t comm, int device, cudaStream_t stream)
    : comm_(comm), device_(device) {
  RONDO_NCCL_CHECK(-1, ncclCommUserRank(comm_, &rank_));
  RONDO_NCCL_CHECK(rank_, ncclCommCount(comm_, &size_));
  (void)stream;
  RONDO_CUDA_CHECK(rank_, cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  RONDO_CUDA_CHECK(rank_, cudaMalloc(reinterpret_cast<void**>(&barrier_buffer_), sizeof(int)));
}

NcclCommunicator::~NcclCommunicator() {
  if (barrier_buffer_) cudaFree(barrier_buffer_);
  if (stream_) cudaStreamDestroy(stream_);
  if (comm_) ncclCommDestroy(comm_);
}

void NcclCommunicator::wait(const char* what, int peer, size_t bytes) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::duration_cast<clock::duration>(timeout());
  for (;;) {
    // Until NCCL has enqueued the operation (ncclInProgress) the stream may look idle.
    ncclResult_t async_error = ncclSuccess;
    RONDO_NCCL_CHECK(rank_, ncclCommGetAsyncError(comm_, &async_error));
    RONDO_NCCL_CHECK(rank_, async_error);
    if (async_error == ncclSuccess) {
      cudaError_t state = cudaStreamQuery(stream_);
      if (state == cudaSuccess) return;
      if (state != cudaErrorNotReady) RONDO_CUDA_CHECK(rank_, state);
    }
    if (clock::now() > deadline) break;
    sched_yield();
  }
  ncclCommAbort(comm_);
  comm_ = nullptr;
  std::ostringstream ss;
  ss << what << " of " << bytes << " bytes did not complete within " << timeout().count()
     << " s (backend nccl; communicator aborted)";
  throw TimeoutError(rank_, peer, ss.str());
}

void NcclCommunicator::send(const void* data, size_t bytes, int peer, int /*tag*/) {
  RONDO_NCCL_CHECK(rank_, ncclSend(data, bytes, ncclUint8, peer, comm_, stream_));
  wait("ncclSend", peer, bytes);
}

void NcclCommunicator::recv(void* data, size_t bytes, int peer, int /*tag*/) {
  RONDO_NCCL_CHECK(rank_, ncclRecv(data, bytes, ncclUint8, peer, comm_, stream_));
  wait("ncclRecv", peer, bytes);
}

void NcclCommunicator::sendrecv(const void* send_data, size_t send_bytes, int dst, void* recv_data,
                                size_t recv_bytes, int src, int /*tag*/) {
  RONDO_NCCL_CHECK(rank_, ncclGroupStart());
  RONDO_NCCL_CHECK(rank_, ncclSend(send_data, send_bytes, ncclUint8, dst, comm_, stream_));
  RONDO_NCCL_CHECK(rank_, ncclRecv(recv_data, recv_bytes, ncclUint8, src, comm_, stream_));
  RONDO_NCCL_CHECK(rank_, ncclGroupEnd());
  wait("ncclSend/ncclRecv", src, send_bytes + recv_bytes);
}

void NcclCommunicator::native_allreduce(void* data, size_t count, DType type, ReduceOp op) {
  RONDO_NCCL_CHECK(rank_, ncclAllReduce(data, data, count, to_nccl(type), to_nccl(op), comm_, stream_));
  wait("ncclAllReduce", -1, count * dtype_size(type));
}

void NcclCommunicator::native_alltoall(const void* send_data, void* recv_data, size_t bytes_per_rank) {
  const auto* in = static_cast<const char*>(send_data);
  auto* out = static_cast<char*>(recv_data);
  RONDO_NCCL_CHECK(rank_, ncclGroupStart());
  for (int peer = 0; peer < size_; ++peer) {
    const size_t offset = bytes_per_rank * static_cast<size_t>(peer);
    RONDO_NCCL_CHECK(rank_, ncclSend(in + offset, bytes_per_rank, ncclUint8, peer, comm_, stream_));
    RONDO_NCCL_CHECK(rank_, ncclRecv(out + offset, bytes_per_rank, ncclUint8, peer, comm_, stream_));
  }
  RONDO_NCCL_CHECK(rank_, ncclGroupEnd());
  wait("alltoall (grouped ncclSend/ncclRecv)", -1, bytes_per_rank * static_cast<size_t>(size_));
}

void NcclCommunicator::native_barrier() {
  RONDO_NCCL_CHECK(rank_,
                   ncclAllReduce(barrier_buffer_, barrier_buffer_, 1, ncclInt32, ncclSum, comm_, stream_));
  wait("barrier (ncclAllReduce of one int)", -1, sizeof(int));
}

void NcclCommunicator::wait_ready(ncclComm_t comm, const char* what) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::duration_cast<clock::duration>(timeout());
  for (;;) {
    ncclResult_t state = ncclSuccess;
    RONDO_NCCL_CHECK(rank_, ncclCommGetAsyncError(comm, &state));
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) {
      ncclCommAbort(comm);
      if (comm == comm_) comm_ = nullptr;
      RONDO_NCCL_CHECK(rank_, state);
    }
    if (clock::now() > deadline) break;
    sched_yield();
  }
  ncclCommAbort(comm);
  if (comm == comm_) comm_ = nullptr;
  std::ostringstream ss;
  ss << what << " did not complete within " << timeout().count()
     << " s (backend nccl: did every rank of the group join?; communicator aborted)";
  throw TimeoutError(rank_, -1, ss.str());
}

std::unique_ptr<Communicator> NcclCommunicator::split(const std::vector<int>& ranks) {
  int color = NCCL_SPLIT_NOCOLOR, key = 0;
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (ranks[i] == rank_) {
      color = 0;
      key = static_cast<int>(i);
    }
  }
  ncclComm_t sub = nullptr;
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  RONDO_NCCL_CHECK(rank_, ncclCommSplit(comm_, color, key, &sub, &config));
  // The split is collective over this communicator: both report until it is done.
  wait_ready(comm_, "ncclCommSplit");
  if (sub == nullptr) return nullptr;
  wait_ready(sub, "ncclCommSplit (the new communicator)");
  std::unique_ptr<Communicator> out(new NcclCommunicator(sub, device_, stream_));
  out->set_timeout(timeout());
  return out;
}

}  // namespace rondo

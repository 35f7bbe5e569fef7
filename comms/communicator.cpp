#include "comms/communicator.h"

#include <sched.h>
#include <algorithm>
#include <atomic>
#include <thread>

#include "common/errors.h"

namespace rondo {

size_t dtype_size(DType type) {
  switch (type) {
    case DType::kFloat32:
    case DType::kInt32:
      return 4;
    case DType::kFloat64:
    case DType::kInt64:
      return 8;
  }
  return 0;
}

const char* dtype_name(DType type) {
  switch (type) {
    case DType::kFloat32:
      return "float32";
    case DType::kFloat64:
      return "float64";
    case DType::kInt32:
      return "int32";
    case DType::kInt64:
      return "int64";
  }
  return "?";
}

namespace {

template <typename T>
void reduce_typed(T* dst, const T* src, size_t count, ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      for (size_t i = 0; i < count; ++i) dst[i] += src[i];
      break;
    case ReduceOp::kMax:
      for (size_t i = 0; i < count; ++i) dst[i] = std::max(dst[i], src[i]);
      break;
    case ReduceOp::kMin:
      for (size_t i = 0; i < count; ++i) dst[i] = std::min(dst[i], src[i]);
      break;
  }
}

}  // namespace

void reduce_into(void* dst, const void* src, size_t count, DType type, ReduceOp op) {
  switch (type) {
    case DType::kFloat32:
      return reduce_typed(static_cast<float*>(dst), static_cast<const float*>(src), count, op);
    case DType::kFloat64:
      return reduce_typed(static_cast<double*>(dst), static_cast<const double*>(src), count, op);
    case DType::kInt32:
      return reduce_typed(static_cast<int32_t*>(dst), static_cast<const int32_t*>(src), count, op);
    case DType::kInt64:
      return reduce_typed(static_cast<int64_t*>(dst), static_cast<const int64_t*>(src), count, op);
  }
}

void CommRequest::wait(std::chrono::duration<double> timeout) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::duration_cast<clock::duration>(timeout);
  PollBackoff backoff;
  while (!test()) {
    if (clock::now() > deadline) {
      throw TimeoutError(rank_, peer_,
                         what_ + " did not complete within " + std::to_string(timeout.count()) + " s");
    }
    backoff.pause();
  }
}

namespace {
std::atomic<bool> oversubscribed_node{false};
}  // namespace

void PollBackoff::set_oversubscribed(bool oversubscribed) { oversubscribed_node = oversubscribed; }

void PollBackoff::pause() {
  if (!long_wait_) {
    if (++spins_ % 64 != 0) return;
    long_wait_ = std::chrono::steady_clock::now() - start_ >= kSpinFor;
  }
  if (!long_wait_ || !oversubscribed_node) {
    sched_yield();
    return;
  }
  std::this_thread::sleep_for(sleep_);
  sleep_ = std::min(2 * sleep_, kOversubscribedSleep);
}

namespace {

[[noreturn]] void unsupported(const Communicator& comm, const char* what) {
  throw CommError(comm.rank(), -1, "backend " + comm.backend_name() + " does not support " + what);
}

}  // namespace

std::unique_ptr<CommRequest> Communicator::isend(const void*, size_t, int, int) {
  unsupported(*this, "isend");
}

std::unique_ptr<CommRequest> Communicator::irecv(void*, size_t, int, int) { unsupported(*this, "irecv"); }

std::unique_ptr<CommRequest> Communicator::native_iallreduce(void*, size_t, DType, ReduceOp) {
  unsupported(*this, "a non-blocking native allreduce");
}

}  // namespace rondo

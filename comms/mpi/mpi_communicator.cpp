#include "comms/mpi/mpi_communicator.h"

#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h>  // Open MPI's MPIX_Query_cuda_support
#endif

#include <chrono>
#include <climits>
#include <sstream>

#include "common/errors.h"

namespace rondo {

void mpi_check(int code, const char* call, const char* file, int line, int rank) {
  if (code == MPI_SUCCESS) return;
  char message[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, message, &len);
  std::ostringstream ss;
  ss << call << " failed at " << file << ":" << line << ": "
     << std::string(message, static_cast<size_t>(len));
  throw CommError(rank, -1, ss.str());
}

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided_);
    owns_ = true;
  } else {
    MPI_Query_thread(&provided_);
  }
}

bool MpiRuntime::cuda_aware() {
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
  return MPIX_Query_cuda_support() == 1;
#else
  return false;
#endif
}

MpiRuntime::~MpiRuntime() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (owns_ && !finalised) MPI_Finalize();
}

namespace {

MPI_Datatype to_mpi(DType t) {
  switch (t) {
    case DType::kFloat32:
      return MPI_FLOAT;
    case DType::kFloat64:
      return MPI_DOUBLE;
    case DType::kInt32:
      return MPI_INT32_T;
    case DType::kInt64:
      return MPI_INT64_T;
  }
  return MPI_BYTE;
}

MPI_Op to_mpi(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return MPI_SUM;
    case ReduceOp::kMax:
      return MPI_MAX;
    case ReduceOp::kMin:
      return MPI_MIN;
  }
  return MPI_SUM;
}

int checked_count(size_t bytes, int rank) {
  if (bytes > static_cast<size_t>(INT_MAX)) {
    throw CommError(rank, -1, "message of " + std::to_string(bytes) + " bytes exceeds MPI's int count");
  }
  return static_cast<int>(bytes);
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm) {
  MPI_Comm_dup(comm, &comm_);
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

MpiCommunicator::~MpiCommunicator() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (comm_ != MPI_COMM_NULL && !finalised) MPI_Comm_free(&comm_);
}

namespace {

class MpiRequest : public CommRequest {
 public:
  MpiRequest(MPI_Request request, bool collective, int rank, int peer, std::string what)
      : CommRequest(rank, peer, std::move(what)), request_(request), collective_(collective) {}
  ~MpiRequest() override {
    if (request_ == MPI_REQUEST_NULL || collective_) return;
    MPI_Cancel(&request_);
    MPI_Request_free(&request_);
  }
  bool test() override {
    if (request_ == MPI_REQUEST_NULL) return true;
    int done = 0;
    RONDO_MPI_CHECK(rank(), MPI_Test(&request_, &done, MPI_STATUS_IGNORE));
    return done != 0;
  }

 private:
  MPI_Request request_;
  bool collective_;
};

std::string p2p_what(const char* op, size_t bytes, const char* dir, int peer, int tag) {
  return std::string(op) + " of " + std::to_string(bytes) + " bytes " + dir + " rank " +
         std::to_string(peer) + " (tag " + std::to_string(tag) + ", backend mpi)";
}

}  // namespace

void MpiCommunicator::wait_all(MPI_Request* requests, int count, int peer, const char* what, size_t bytes,
                               bool collective) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::duration_cast<clock::duration>(timeout());
  // Open MPI progresses only inside MPI calls, so a wait must keep polling.
  PollBackoff backoff;
  for (;;) {
    int done = 0;
    RONDO_MPI_CHECK(rank_, MPI_Testall(count, requests, &done, MPI_STATUSES_IGNORE));
    if (done) return;
    if (clock::now() > deadline) break;
    backoff.pause();
  }
  for (int i = 0; i < count && !collective; ++i) {
    if (requests[i] != MPI_REQUEST_NULL) {
      MPI_Cancel(&requests[i]);
      MPI_Request_free(&requests[i]);
    }
  }
  std::ostringstream ss;
  ss << what << " of " << bytes << " bytes did not complete within " << timeout().count()
     << " s (backend mpi)";
  throw TimeoutError(rank_, peer, ss.str());
}

std::unique_ptr<CommRequest> MpiCommunicator::isend(const void* data, size_t bytes, int peer, int tag) {
  MPI_Request req;
  RONDO_MPI_CHECK(rank_, MPI_Isend(data, checked_count(bytes, rank_), MPI_BYTE, peer, tag, comm_, &req));
  return std::make_unique<MpiRequest>(req, false, rank_, peer, p2p_what("isend", bytes, "to", peer, tag));
}

std::unique_ptr<CommRequest> MpiCommunicator::irecv(void* data, size_t bytes, int peer, int tag) {
  MPI_Request req;
  RONDO_MPI_CHECK(rank_, MPI_Irecv(data, checked_count(bytes, rank_), MPI_BYTE, peer, tag, comm_, &req));
  return std::make_unique<MpiRequest>(req, false, rank_, peer, p2p_what("irecv", bytes, "from", peer, tag));
}

std::unique_ptr<CommRequest> MpiCommunicator::native_iallreduce(void* data, size_t count, DType type,
                                                                ReduceOp op) {
  MPI_Request req;
  RONDO_MPI_CHECK(rank_, MPI_Iallreduce(MPI_IN_PLACE, data, checked_count(count, rank_), to_mpi(type),
                                        to_mpi(op), comm_, &req));
  return std::make_unique<MpiRequest>(
      req, true, rank_, -1, "native_iallreduce of " + std::to_string(count) + " elements (backend mpi)");
}

void MpiCommunicator::send(const void* data, size_t bytes, int peer, int tag) {
  MPI_Request req;
  RONDO_MPI_CHECK(rank_, MPI_Isend(data, checked_count(bytes, rank_), MPI_BYTE, peer, tag, comm_, &req));
  wait_all(&req, 1, peer, "send", bytes);
}

void MpiCommunicator::recv(void* data, size_t bytes, int peer, int tag) {
  MPI_Request req;
  RONDO_MPI_CHECK(rank_, MPI_Irecv(data, checked_count(bytes, rank_), MPI_BYTE, peer, tag, comm_, &req));
  wait_all(&req, 1, peer, "recv", bytes);
}

void MpiCommunicator::sendrecv(const void* send_data, size_t send_bytes, int dst, void* recv_data,
                               size_t recv_bytes, int src, int tag) {
  MPI_Request reqs[2];
  RONDO_MPI_CHECK(
      rank_, MPI_Irecv(recv_data, checked_count(recv_bytes, rank_), MPI_BYTE, src, tag, comm_, &reqs[0]));
  RONDO_MPI_CHECK(
      rank_, MPI_Isend(send_data, checked_count(send_bytes, rank_), MPI_BYTE, dst, tag, comm_, &reqs[1]));
  wait_all(reqs, 2, src == dst ? dst : src, "sendrecv", send_bytes + recv_bytes);
}

void MpiCommunicator::native_allreduce(void* data, size_t count, DType type, ReduceOp op) {
  MPI_Request req;
  RONDO_MPI_CHECK(rank_, MPI_Iallreduce(MPI_IN_PLACE, data, checked_count(count, rank_), to_mpi(type),
                                        to_mpi(op), comm_, &req));
  wait_all(&req, 1, -1, "MPI_Iallreduce", count * dtype_size(type), true);
}

void MpiCommunicator::native_alltoall(const void* send_data, void* recv_data, size_t bytes_per_rank) {
  MPI_Request req;
  const int n = checked_count(bytes_per_rank, rank_);
  RONDO_MPI_CHECK(rank_, MPI_Ialltoall(send_data, n, MPI_BYTE, recv_data, n, MPI_BYTE, comm_, &req));
  wait_all(&req, 1, -1, "MPI_Ialltoall", bytes_per_rank * static_cast<size_t>(size_), true);
}

void MpiCommunicator::native_barrier() {
  MPI_Request req;
  RONDO_MPI_CHECK(rank_, MPI_Ibarrier(comm_, &req));
  wait_all(&req, 1, -1, "MPI_Ibarrier", 0, true);
}

std::unique_ptr<Communicator> MpiCommunicator::split(const std::vector<int>& ranks) {
  int color = MPI_UNDEFINED, key = 0;
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (ranks[i] == rank_) {
      color = 0;
      key = static_cast<int>(i);
    }
  }
  // MPI_Comm_split blocks until every rank of the communicator calls it: a non-blocking barrier
  // first gives it this communicator's deadline (a rank that never arrives is a TimeoutError, not
  // a hang).
  native_barrier();
  MPI_Comm sub = MPI_COMM_NULL;
  RONDO_MPI_CHECK(rank_, MPI_Comm_split(comm_, color, key, &sub));
  if (sub == MPI_COMM_NULL) return nullptr;
  auto out = std::make_unique<MpiCommunicator>(sub);
  MPI_Comm_free(&sub);
  out->set_timeout(timeout());
  return out;
}

}  // namespace rondo

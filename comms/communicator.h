// Communicator: the small interface every transport backend (MPI, NCCL) implements. rondo's own
// collectives (collectives.h) are built on its point-to-point operations so that each
// connection's time is visible; the native_* operations pass through to the library's own
// collectives for comparison. Every blocking call waits at most timeout() and then throws
// rondo::TimeoutError naming the rank and peer. An operation a backend cannot do throws
// rondo::CommError naming the backend.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rondo {

enum class DType { kFloat32, kFloat64, kInt32, kInt64 };
enum class ReduceOp { kSum, kMax, kMin };

size_t dtype_size(DType type);
const char* dtype_name(DType type);

// dst[i] = op(dst[i], src[i]) for i < count. Host memory only.
void reduce_into(void* dst, const void* src, size_t count, DType type, ReduceOp op);

// Default deadline of a communication wait (comms.timeout_s overrides it).
inline constexpr std::chrono::duration<double> kDefaultCommTimeout{300.0};

// A non-blocking operation in flight (c10d's Work). test() polls it and never blocks; wait()
// polls until it completes. Destroying an unfinished request abandons it: a point-to-point one is
// cancelled; a collective cannot be (MPI forbids it), so whoever gives up on one must fail the job.
class CommRequest {
 public:
  virtual ~CommRequest() = default;
  virtual bool test() = 0;
  // Blocks until complete; throws TimeoutError naming the rank, the peer and the operation when
  // that takes longer than `timeout`.
  void wait(std::chrono::duration<double> timeout);

  int rank() const { return rank_; }
  int peer() const { return peer_; }  // -1 for a collective
  const std::string& what() const { return what_; }

 protected:
  CommRequest(int rank, int peer, std::string what) : rank_(rank), peer_(peer), what_(std::move(what)) {}

 private:
  int rank_;
  int peer_;
  std::string what_;  // e.g. "isend of 4096 bytes to rank 1 (tag 7)"
};

// Paces a polling wait: call pause() after each unsuccessful poll. For its first kSpinFor it spins
// (lowest latency), yielding the core every 64 polls; a wait that lasts longer is a long one (a
// pipeline bubble, a slow peer) and from then on:
// - yields the core after every poll (a microsecond more latency). A busy loop in user mode on
//   one virtual CPU took up to half the throughput of its sibling on a cloud VM (measured: a rank
//   waiting for its peer slowed that peer's compute up to 2x, so the peer stayed behind; a
//   sched_yield loop cost it nothing; bench/RESULTS.md, Fault localisation);
// - when the node runs more ranks than it has cores (set_oversubscribed), sleeps after each poll
//   instead, kSleep doubling up to kOversubscribedSleep, so that idle ranks leave the cores to the
//   working ones (an idle rank's wake-ups cost CPU its peers need), at the price of up to that
//   much latency on a long wait.
class PollBackoff {
 public:
  static constexpr std::chrono::microseconds kSpinFor{200}, kSleep{50}, kOversubscribedSleep{250};
  // Process-wide; the worker sets it at start-up from its node's rank count and cores.
  static void set_oversubscribed(bool oversubscribed);
  void pause();

 private:
  int spins_ = 0;
  bool long_wait_ = false;
  std::chrono::microseconds sleep_ = kSleep;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend_name() const = 0;
  // True when buffers live in host memory (rondo's collectives then reduce on the host).
  virtual bool host_buffers() const = 0;

  std::chrono::duration<double> timeout() const { return timeout_; }
  void set_timeout(std::chrono::duration<double> t) { timeout_ = t; }

  // Point-to-point. `tag` separates concurrent streams between the same pair.
  virtual void send(const void* data, size_t bytes, int peer, int tag) = 0;
  virtual void recv(void* data, size_t bytes, int peer, int tag) = 0;
  // Sends to `dst` and receives from `src` concurrently (no deadlock in rings).
  virtual void sendrecv(const void* send_data, size_t send_bytes, int dst, void* recv_data, size_t recv_bytes,
                        int src, int tag) = 0;

  // Non-blocking forms; the buffers must stay valid until the request completes. A backend
  // without them throws CommError naming itself.
  virtual std::unique_ptr<CommRequest> isend(const void* data, size_t bytes, int peer, int tag);
  virtual std::unique_ptr<CommRequest> irecv(void* data, size_t bytes, int peer, int tag);
  virtual std::unique_ptr<CommRequest> native_iallreduce(void* data, size_t count, DType type, ReduceOp op);

  // The transport library's own collectives.
  virtual void native_allreduce(void* data, size_t count, DType type, ReduceOp op) = 0;
  virtual void native_alltoall(const void* send_data, void* recv_data, size_t bytes_per_rank) = 0;
  virtual void native_barrier() = 0;

  // A communicator over `ranks` (numbered in this communicator), ranked in that order. Must be
  // called by every rank of this communicator; returns nullptr on ranks not in `ranks`.
  virtual std::unique_ptr<Communicator> split(const std::vector<int>& ranks) = 0;

 private:
  std::chrono::duration<double> timeout_ = kDefaultCommTimeout;
};

}  // namespace rondo

// Collectives built on a Communicator's point-to-point operations, so that every connection's
// time lands in the TimingRecorder (ring allreduce = reduce-scatter + allgather, pairwise
// all-to-all(v), binomial-tree broadcast, dissemination barrier). Works with any group size,
// including 1, and any element count. Host buffers only: on a device backend the ring allreduce,
// reduce-scatter, allgather and all-to-all(v) throw CommError naming it (use the backend's native
// collectives there), the barrier is the backend's, and broadcast moves the caller's buffers.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "comms/communicator.h"
#include "comms/pending_collective.h"
#include "comms/timing_recorder.h"

namespace rondo {

// One pair of an all-to-all's exchanges: the block for `dst` and the one from `src`.
struct AlltoallPair {
  int dst, src;
  const char* send;
  size_t send_bytes;
  char* recv;
  size_t recv_bytes;
};
// The exchanges of an all-to-all(v) in pairwise order (step s: to rank+s, from rank-s), after
// copying the block a rank sends itself; `send_bytes`: what this rank sends in all. Throws
// CommError for counts of the wrong size or a self block whose sizes differ.
std::vector<AlltoallPair> alltoall_pairs(const Communicator& comm, const void* send,
                                         const std::vector<size_t>& send_counts, void* recv,
                                         const std::vector<size_t>& recv_counts, DType type,
                                         size_t& send_bytes);

class Collectives {
 public:
  // `recorder` may be null (recording off). Both must outlive this object.
  Collectives(Communicator& comm, TimingRecorder* recorder);

  Communicator& comm() { return comm_; }

  // Names the group in the recorder's records (RecordGroup): `name` must be the same on every
  // member and unique in the job; `world_ranks[i]` is member i's world rank (empty: the identity).
  void set_group(std::string name, std::vector<int> world_ranks);
  const RecordGroup& group() const { return group_; }
  // The ring allreduce's order: members (numbered in this communicator) in ring order, each sending
  // to the next (a traffic plan's order, one that avoids a slow link). Empty: member order. Every
  // member must set the same order before the same collective.
  void set_ring_order(std::vector<int> order);
  const std::vector<int>& ring_order() const { return ring_order_; }

  // Emulates a slow link for tests and benchmarks: every point-to-point transfer of these
  // collectives takes at least bytes / `bytes_per_second` (the remainder is slept, leaving the
  // core free as a real network wait would). 0 (the default) turns it off. Native collectives
  // are not affected.
  void set_emulated_link_bandwidth(double bytes_per_second) { emulated_link_bps_ = bytes_per_second; }

  void allreduce(void* data, size_t count, DType type, ReduceOp op);
  // The same ring allreduce, and the library's, started but not finished: the caller advances it
  // with progress() (see PendingCollective). At most one collective of a communicator may be in
  // flight at a time; `data` must stay valid until it completes.
  std::unique_ptr<PendingCollective> start_allreduce(void* data, size_t count, DType type, ReduceOp op);
  std::unique_ptr<PendingCollective> start_native_allreduce(void* data, size_t count, DType type,
                                                            ReduceOp op);
  // `send` holds size()*recv_count elements; rank r receives the reduction of block r.
  void reduce_scatter(const void* send, void* recv, size_t recv_count, DType type, ReduceOp op);
  // `recv` receives size()*count elements, block r from rank r.
  void allgather(const void* send, void* recv, size_t count, DType type);
  // Block j of `send` (count elements) goes to rank j; block j of `recv` comes from rank j.
  void alltoall(const void* send, void* recv, size_t count, DType type);
  // Variable blocks: send_counts[j] elements to rank j, recv_counts[j] from rank j, packed
  // contiguously in rank order.
  void alltoallv(const void* send, const std::vector<size_t>& send_counts, void* recv,
                 const std::vector<size_t>& recv_counts, DType type);
  // The same exchange started but not finished: every transfer posted at once (each connection
  // timed when both its directions complete), the caller advancing it with progress() between
  // pieces of compute. One all-to-all of a communicator in flight at a time; the buffers must stay
  // valid until it completes.
  std::unique_ptr<PendingCollective> start_alltoallv(const void* send, const std::vector<size_t>& send_counts,
                                                     void* recv, const std::vector<size_t>& recv_counts,
                                                     DType type);
  void broadcast(void* data, size_t count, DType type, int root);
  void barrier();

  // Native (library) collectives through the same recorder, for side-by-side comparison.
  void native_allreduce(void* data, size_t count, DType type, ReduceOp op);
  void native_alltoall(const void* send, void* recv, size_t count, DType type);

 private:
  void require_host(const char* op) const;
  // The record of a collective entered now (nullopt when recording is off).
  std::optional<TimingRecorder::Scope> record(CollectiveOp op, uint64_t bytes);
  // One timed sendrecv inside a recorded collective.
  void exchange(TimingRecorder::Scope* scope, const void* send, size_t send_bytes, int dst, void* recv,
                size_t recv_bytes, int src, int tag);
  std::vector<char>& scratch(size_t bytes);
  // Sleeps until a transfer of `bytes` begun at `t0` has taken as long as the emulated link needs.
  void throttle(std::chrono::steady_clock::time_point t0, size_t bytes) const;

  Communicator& comm_;
  TimingRecorder* recorder_;
  RecordGroup group_;
  std::vector<int> ring_order_;
  std::vector<char> scratch_;
  double emulated_link_bps_ = 0;
};

}  // namespace rondo

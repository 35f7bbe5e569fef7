// InProcessCommunicator: the ranks of a world as threads of one process, exchanging messages
// through shared mailboxes: the Communicator interface without MPI, so that what runs on top of it
// (rondo's collectives, the stage executor, fault localisation) is unit-tested in well under a
// second. Sends are buffered (they complete at once, as MPI's eager protocol does for small
// messages); receives match by source and tag in send order, as MPI does; every blocking wait
// throws TimeoutError after timeout(). The native_* collectives are rondo's own exchanges on
// reserved tags, so they behave like a library's (no per-connection timing).
// Call order: create_world(n) once; hand communicator k to the thread that plays rank k.
#pragma once

#include <deque>
#include <memory>
#include <vector>

#include "comms/communicator.h"

namespace rondo {

class InProcessCommunicator : public Communicator {
 public:
  struct Fabric;  // the mailboxes every rank of a world shares

  // The `size` ranks of a new world, rank k at index k.
  static std::vector<std::unique_ptr<Communicator>> create_world(int size);

  InProcessCommunicator(std::shared_ptr<Fabric> fabric, uint64_t id, std::vector<int> world_ranks, int rank);

  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(world_ranks_.size()); }
  std::string backend_name() const override { return "in-process"; }
  bool host_buffers() const override { return true; }

  void send(const void* data, size_t bytes, int peer, int tag) override;
  void recv(void* data, size_t bytes, int peer, int tag) override;
  void sendrecv(const void* send_data, size_t send_bytes, int dst, void* recv_data, size_t recv_bytes,
                int src, int tag) override;
  std::unique_ptr<CommRequest> isend(const void* data, size_t bytes, int peer, int tag) override;
  std::unique_ptr<CommRequest> irecv(void* data, size_t bytes, int peer, int tag) override;

  void native_allreduce(void* data, size_t count, DType type, ReduceOp op) override;
  void native_alltoall(const void* send_data, void* recv_data, size_t bytes_per_rank) override;
  void native_barrier() override;

  std::unique_ptr<Communicator> split(const std::vector<int>& ranks) override;

  // Receives of one message, completed or not (for irecv()).
  bool try_recv(void* data, size_t bytes, int peer, int tag);

 private:
  using Mailbox = std::deque<std::vector<char>>;
  void check_peer(int peer, const char* op) const;
  // Moves the mailbox's first message into `data` (the fabric's lock held).
  void take(Mailbox& box, void* data, size_t bytes, int peer, int tag) const;

  std::shared_ptr<Fabric> fabric_;
  uint64_t id_;                   // this communicator's, the same on all its ranks
  std::vector<int> world_ranks_;  // its ranks' numbers in the world
  int rank_;
  uint64_t splits_ = 0;  // split() calls so far: every rank makes them in the same order
};

}  // namespace rondo

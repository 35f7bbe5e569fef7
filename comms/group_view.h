// GroupView: a group of ranks of a communicator for point-to-point transfers, without creating a
// communicator (which is collective over all ranks). Group rank i is members[i]; transfers go over
// the underlying communicator with peers translated. For groups that change every step (HDP: each
// sequence's context-parallel group): members of two groups that share ranks must transfer in the
// same order on every rank (messages between a pair match in order per tag). Collectives and
// split() are refused: a view carries transfers only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "comms/communicator.h"

namespace rondo {

class GroupView : public Communicator {
 public:
  // Throws std::invalid_argument when `under`'s rank is not among `members` or a member is out of range.
  GroupView(Communicator& under, std::vector<int> members);

  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(members_.size()); }
  std::string backend_name() const override { return under_.backend_name() + " (group view)"; }
  bool host_buffers() const override { return under_.host_buffers(); }

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

 private:
  int member(int peer) const;

  Communicator& under_;
  std::vector<int> members_;
  int rank_ = -1;
};

}  // namespace rondo

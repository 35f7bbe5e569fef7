#include "comms/in_process_communicator.h"

#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <tuple>

#include "common/errors.h"

namespace rondo {

namespace {

// Tags below zero belong to the native collectives (user tags are >= 0).
constexpr int kTagAllreduce = -1, kTagAlltoall = -2;

}  // namespace

struct InProcessCommunicator::Fabric {
  // (communicator id, source, destination, tag) -> messages in send order
  using Key = std::tuple<uint64_t, int, int, int>;
  std::mutex mu;
  std::condition_variable arrived;
  std::map<Key, Mailbox> mailboxes;
};

namespace {

class DoneRequest : public CommRequest {
 public:
  DoneRequest(int rank, int peer, std::string what) : CommRequest(rank, peer, std::move(what)) {}
  bool test() override { return true; }
};

class PendingRecv : public CommRequest {
 public:
  PendingRecv(InProcessCommunicator& comm, void* data, size_t bytes, int peer, int tag)
      : CommRequest(comm.rank(), peer,
                    "irecv of " + std::to_string(bytes) + " bytes from rank " + std::to_string(peer) +
                        " (tag " + std::to_string(tag) + ")"),
        comm_(comm),
        data_(data),
        bytes_(bytes),
        tag_(tag) {}
  bool test() override { return done_ || (done_ = comm_.try_recv(data_, bytes_, peer(), tag_)); }

 private:
  InProcessCommunicator& comm_;
  void* data_;
  size_t bytes_;
  int tag_;
  bool done_ = false;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> InProcessCommunicator::create_world(int size) {
  auto fabric = std::make_shared<Fabric>();
  std::vector<int> ranks(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) ranks[static_cast<size_t>(r)] = r;
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < size; ++r) out.push_back(std::make_unique<InProcessCommunicator>(fabric, 0, ranks, r));
  return out;
}

InProcessCommunicator::InProcessCommunicator(std::shared_ptr<Fabric> fabric, uint64_t id,
                                             std::vector<int> world_ranks, int rank)
    : fabric_(std::move(fabric)), id_(id), world_ranks_(std::move(world_ranks)), rank_(rank) {}

void InProcessCommunicator::check_peer(int peer, const char* op) const {
  if (peer < 0 || peer >= size()) {
    throw CommError(rank_, peer,
                    std::string(op) + ": no rank " + std::to_string(peer) + " in a communicator of " +
                        std::to_string(size()));
  }
}

void InProcessCommunicator::send(const void* data, size_t bytes, int peer, int tag) {
  check_peer(peer, "send");
  const auto* p = static_cast<const char*>(data);
  {
    std::lock_guard lock(fabric_->mu);
    fabric_->mailboxes[{id_, rank_, peer, tag}].emplace_back(p, p + bytes);
  }
  fabric_->arrived.notify_all();
}

void InProcessCommunicator::take(Mailbox& box, void* data, size_t bytes, int peer, int tag) const {
  auto& message = box.front();
  if (message.size() != bytes) {
    throw CommError(rank_, peer,
                    "receive of " + std::to_string(bytes) + " bytes (tag " + std::to_string(tag) +
                        ") matched a message of " + std::to_string(message.size()));
  }
  std::memcpy(data, message.data(), bytes);
  box.pop_front();
}

bool InProcessCommunicator::try_recv(void* data, size_t bytes, int peer, int tag) {
  std::lock_guard lock(fabric_->mu);
  auto& box = fabric_->mailboxes[{id_, peer, rank_, tag}];
  if (box.empty()) return false;
  take(box, data, bytes, peer, tag);
  return true;
}

void InProcessCommunicator::recv(void* data, size_t bytes, int peer, int tag) {
  check_peer(peer, "recv");
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout());
  std::unique_lock lock(fabric_->mu);
  auto& box = fabric_->mailboxes[{id_, peer, rank_, tag}];  // map references survive insertions
  if (!fabric_->arrived.wait_until(lock, deadline, [&] { return !box.empty(); })) {
    throw TimeoutError(rank_, peer,
                       "in-process recv of " + std::to_string(bytes) + " bytes (tag " + std::to_string(tag) +
                           ") got nothing within " + std::to_string(timeout().count()) + " s");
  }
  take(box, data, bytes, peer, tag);
}

void InProcessCommunicator::sendrecv(const void* send_data, size_t send_bytes, int dst, void* recv_data,
                                     size_t recv_bytes, int src, int tag) {
  send(send_data, send_bytes, dst, tag);  // buffered: never blocks
  recv(recv_data, recv_bytes, src, tag);
}

std::unique_ptr<CommRequest> InProcessCommunicator::isend(const void* data, size_t bytes, int peer, int tag) {
  send(data, bytes, peer, tag);
  return std::make_unique<DoneRequest>(
      rank_, peer, "isend of " + std::to_string(bytes) + " bytes to rank " + std::to_string(peer));
}

std::unique_ptr<CommRequest> InProcessCommunicator::irecv(void* data, size_t bytes, int peer, int tag) {
  check_peer(peer, "irecv");
  return std::make_unique<PendingRecv>(*this, data, bytes, peer, tag);
}

void InProcessCommunicator::native_allreduce(void* data, size_t count, DType type, ReduceOp op) {
  // Gather to rank 0, reduce in rank order, send the result back.
  const size_t bytes = count * dtype_size(type);
  if (rank_ == 0) {
    std::vector<char> other(bytes);
    for (int r = 1; r < size(); ++r) {
      recv(other.data(), bytes, r, kTagAllreduce);
      reduce_into(data, other.data(), count, type, op);
    }
    for (int r = 1; r < size(); ++r) send(data, bytes, r, kTagAllreduce);
  } else {
    send(data, bytes, 0, kTagAllreduce);
    recv(data, bytes, 0, kTagAllreduce);
  }
}

void InProcessCommunicator::native_alltoall(const void* send_data, void* recv_data, size_t bytes_per_rank) {
  const auto* in = static_cast<const char*>(send_data);
  auto* out = static_cast<char*>(recv_data);
  for (int r = 0; r < size(); ++r)
    send(in + bytes_per_rank * static_cast<size_t>(r), bytes_per_rank, r, kTagAlltoall);
  for (int r = 0; r < size(); ++r)
    recv(out + bytes_per_rank * static_cast<size_t>(r), bytes_per_rank, r, kTagAlltoall);
}

void InProcessCommunicator::native_barrier() {
  char nothing = 0;
  native_allreduce(&nothing, 0, DType::kInt32, ReduceOp::kSum);
}

std::unique_ptr<Communicator> InProcessCommunicator::split(const std::vector<int>& ranks) {
  // Every rank calls split in the same order: the call's number names the child on all of them.
  const uint64_t child = id_ * 1000003 + ++splits_;
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (ranks[i] != rank_) continue;
    std::vector<int> world;
    for (int r : ranks) world.push_back(world_ranks_.at(static_cast<size_t>(r)));
    auto out = std::make_unique<InProcessCommunicator>(fabric_, child, std::move(world), static_cast<int>(i));
    out->set_timeout(timeout());
    return out;
  }
  return nullptr;
}

}  // namespace rondo

#include "comms/group_view.h"

#include <algorithm>
#include <stdexcept>

namespace rondo {

GroupView::GroupView(Communicator& under, std::vector<int> members)
    : under_(under), members_(std::move(members)) {
  for (int m : members_)
    if (m < 0 || m >= under_.size())
      throw std::invalid_argument("group view: rank " + std::to_string(m) + " is not in a communicator of " +
                                  std::to_string(under_.size()));
  const auto me = std::find(members_.begin(), members_.end(), under_.rank());
  if (me == members_.end())
    throw std::invalid_argument("group view: rank " + std::to_string(under_.rank()) + " is not a member");
  rank_ = static_cast<int>(me - members_.begin());
  set_timeout(under_.timeout());
}

int GroupView::member(int peer) const {
  if (peer < 0 || peer >= size())
    throw std::invalid_argument("group view: peer " + std::to_string(peer) + " of a group of " +
                                std::to_string(size()));
  return members_[static_cast<size_t>(peer)];
}

void GroupView::send(const void* data, size_t bytes, int peer, int tag) {
  under_.send(data, bytes, member(peer), tag);
}
void GroupView::recv(void* data, size_t bytes, int peer, int tag) {
  under_.recv(data, bytes, member(peer), tag);
}
void GroupView::sendrecv(const void* send_data, size_t send_bytes, int dst, void* recv_data,
                         size_t recv_bytes, int src, int tag) {
  under_.sendrecv(send_data, send_bytes, member(dst), recv_data, recv_bytes, member(src), tag);
}
std::unique_ptr<CommRequest> GroupView::isend(const void* data, size_t bytes, int peer, int tag) {
  return under_.isend(data, bytes, member(peer), tag);
}
std::unique_ptr<CommRequest> GroupView::irecv(void* data, size_t bytes, int peer, int tag) {
  return under_.irecv(data, bytes, member(peer), tag);
}

namespace {
[[noreturn]] void transfers_only(const char* what) {
  throw std::logic_error(std::string("group view: ") + what +
                         " is not offered (a view carries transfers only)");
}
}  // namespace

void GroupView::native_allreduce(void*, size_t, DType, ReduceOp) { transfers_only("native_allreduce"); }
void GroupView::native_alltoall(const void*, void*, size_t) { transfers_only("native_alltoall"); }
void GroupView::native_barrier() { transfers_only("native_barrier"); }
std::unique_ptr<Communicator> GroupView::split(const std::vector<int>&) { transfers_only("split"); }

}  // namespace rondo

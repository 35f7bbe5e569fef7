#include "comms/recorded_transfers.h"

#include <chrono>
#include <optional>
#include <stdexcept>

namespace rondo {

namespace {

// A transfer in flight that records itself once a wait finds it unfinished: its record opens
// then, naming the peer, and closes when the transfer completes; a wait given up (a timeout
// unwinding) leaves it open. One done before anyone waited for it cost this rank nothing and is not
// recorded: a ring passes a few transfers per layer and step, which would crowd the recorder's
// slots (and the collectives in them) out.
class RecordedRequest : public CommRequest {
 public:
  RecordedRequest(std::unique_ptr<CommRequest> inner, TimingRecorder& recorder, CollectiveOp op, size_t bytes,
                  int world_peer, const std::string& channel)
      : CommRequest(inner->rank(), inner->peer(), inner->what()),
        inner_(std::move(inner)),
        recorder_(recorder),
        op_(op),
        bytes_(bytes),
        peer_(world_peer),
        channel_(channel),
        posted_ns_(TimingRecorder::wall_ns()) {}

  bool test() override {
    if (done_) return true;
    if (!inner_->test()) {
      if (!open_) {
        wait_start_ = std::chrono::steady_clock::now();
        open_.emplace(recorder_.begin_transfer_wait(op_, bytes_, peer_, posted_ns_, channel_));
      }
      return false;
    }
    done_ = true;
    if (open_) {
      open_->end_transfer(wait_start_);
      open_.reset();
    }
    return true;
  }

 private:
  std::unique_ptr<CommRequest> inner_;
  TimingRecorder& recorder_;
  CollectiveOp op_;
  size_t bytes_;
  int peer_;
  const std::string& channel_;
  int64_t posted_ns_;
  std::chrono::steady_clock::time_point wait_start_;
  bool done_ = false;
  std::optional<TimingRecorder::Scope> open_;
};

}  // namespace

RecordedTransfers::RecordedTransfers(Communicator& under, TimingRecorder* recorder,
                                     std::vector<int> world_ranks, std::string channel)
    : under_(under), recorder_(recorder), world_ranks_(std::move(world_ranks)), channel_(std::move(channel)) {
  if (static_cast<int>(world_ranks_.size()) != under_.size())
    throw std::invalid_argument("recorded transfers: " + std::to_string(world_ranks_.size()) +
                                " world ranks for a communicator of " + std::to_string(under_.size()));
  set_timeout(under_.timeout());
}

std::unique_ptr<CommRequest> RecordedTransfers::recorded(std::unique_ptr<CommRequest> inner, CollectiveOp op,
                                                         size_t bytes, int peer) {
  if (!recorder_) return inner;
  return std::make_unique<RecordedRequest>(std::move(inner), *recorder_, op, bytes,
                                           world_ranks_.at(static_cast<size_t>(peer)), channel_);
}

std::unique_ptr<CommRequest> RecordedTransfers::isend(const void* data, size_t bytes, int peer, int tag) {
  return recorded(under_.isend(data, bytes, peer, tag), CollectiveOp::kSend, bytes, peer);
}

std::unique_ptr<CommRequest> RecordedTransfers::irecv(void* data, size_t bytes, int peer, int tag) {
  return recorded(under_.irecv(data, bytes, peer, tag), CollectiveOp::kRecv, bytes, peer);
}

}  // namespace rondo

#include "comms/recorded_transfers.h"

#include <chrono>
#include <mutex>
#include <optional>
#include <stdexcept>

namespace rondo {

namespace {

// A transfer in flight that records itself once a wait finds it unfinished: its record opens
// then, naming the peer, and closes when the transfer completes; a wait given up (a timeout
// unwinding) leaves it open. One done before anyone waited for it cost this rank nothing and is not
// recorded. Past the channel's budget a wait is recorded only once it has lasted kLongWait.
class RecordedRequest : public CommRequest {
 public:
  RecordedRequest(std::unique_ptr<CommRequest> inner, std::shared_ptr<RecordedTransfers::Channel> channel,
                  CollectiveOp op, size_t bytes, int world_peer)
      : CommRequest(inner->rank(), inner->peer(), inner->what()),
        inner_(std::move(inner)),
        channel_(std::move(channel)),
        op_(op),
        bytes_(bytes),
        peer_(world_peer),
        posted_ns_(TimingRecorder::wall_ns()) {}

  bool test() override {
    if (done_) return true;
    if (!inner_->test()) {
      const auto now = std::chrono::steady_clock::now();
      if (!waiting_) waiting_ = true, wait_start_ = now;
      if (!open_ && channel_->recorder.recording() &&
          (channel_->may_record(now) || now - wait_start_ >= RecordedTransfers::kLongWait))
        open_.emplace(channel_->recorder.begin_transfer_wait(op_, bytes_, peer_, posted_ns_, channel_->name));
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
  std::shared_ptr<RecordedTransfers::Channel> channel_;
  CollectiveOp op_;
  size_t bytes_;
  int peer_;
  int64_t posted_ns_;
  std::chrono::steady_clock::time_point wait_start_;
  bool waiting_ = false, done_ = false;
  std::optional<TimingRecorder::Scope> open_;
};

}  // namespace

bool RecordedTransfers::Channel::may_record(std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mu);
  if (now - window_start >= std::chrono::seconds(1)) window_start = now, in_window = 0;
  return in_window < kRecordsPerSecond && ++in_window > 0;
}

std::shared_ptr<RecordedTransfers::Channel> RecordedTransfers::channel(TimingRecorder* recorder,
                                                                       std::string name) {
  return recorder ? std::make_shared<Channel>(*recorder, std::move(name)) : nullptr;
}

RecordedTransfers::RecordedTransfers(Communicator& under, std::vector<int> world_ranks,
                                     std::shared_ptr<Channel> channel)
    : under_(under), world_ranks_(std::move(world_ranks)), channel_(std::move(channel)) {
  if (static_cast<int>(world_ranks_.size()) != under_.size())
    throw std::invalid_argument("recorded transfers: " + std::to_string(world_ranks_.size()) +
                                " world ranks for a communicator of " + std::to_string(under_.size()));
  set_timeout(under_.timeout());
}

std::unique_ptr<CommRequest> RecordedTransfers::recorded(std::unique_ptr<CommRequest> inner, CollectiveOp op,
                                                         size_t bytes, int peer) {
  if (!channel_) return inner;
  return std::make_unique<RecordedRequest>(std::move(inner), channel_, op, bytes,
                                           world_ranks_.at(static_cast<size_t>(peer)));
}

std::unique_ptr<CommRequest> RecordedTransfers::isend(const void* data, size_t bytes, int peer, int tag) {
  return recorded(under_.isend(data, bytes, peer, tag), CollectiveOp::kSend, bytes, peer);
}

std::unique_ptr<CommRequest> RecordedTransfers::irecv(void* data, size_t bytes, int peer, int tag) {
  return recorded(under_.irecv(data, bytes, peer, tag), CollectiveOp::kRecv, bytes, peer);
}

}  // namespace rondo

// RecordedTransfers: a communicator whose non-blocking transfers go in the flight recorder, for
// point-to-point traffic outside rondo's collectives (ring attention's blocks going round a
// context-parallel group). An isend/irecv that a wait finds unfinished is recorded as a kSend/kRecv
// naming its peer by world rank, under a channel of its own (the record's group: "ring"), so the
// pipeline's transfer lineup and the collective lineup leave it alone: posted, waited for from, and
// completed. While the wait is blocked its record is open and names the peer waited for: a flight
// dump then shows which member of the ring never came. Transfers done before they were waited for
// (hidden behind compute) are not recorded. A ring that waits on every transfer (its link slower
// than its compute) would crowd the recorder's collectives out: past kRecordsPerSecond waits a
// second on its channel (shared by a rank's ring groups), a wait is recorded only once it has
// lasted kLongWait (a hang's evidence stays). Blocking calls and native collectives pass through.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "comms/communicator.h"
#include "comms/timing_recorder.h"

namespace rondo {

class RecordedTransfers : public Communicator {
 public:
  static constexpr int kRecordsPerSecond = 32;
  static constexpr std::chrono::milliseconds kLongWait{1000};
  // What the requests record into, shared with them (they may outlive this communicator).
  struct Channel {
    Channel(TimingRecorder& r, std::string n) : recorder(r), name(std::move(n)) {}
    // Whether a wait starting `now` may be recorded within the budget (counts it).
    bool may_record(std::chrono::steady_clock::time_point now);
    TimingRecorder& recorder;
    const std::string name;
    std::mutex mu;
    std::chrono::steady_clock::time_point window_start{};
    int in_window = 0;
  };

  // A channel of `name` in `recorder` (null when the recorder is: nothing recorded), to share among
  // communicators whose waits count against one budget (a rank's ring groups, which change every step).
  static std::shared_ptr<Channel> channel(TimingRecorder* recorder, std::string name);
  // `world_ranks[i]`: member i of `under` in the world. `recorder` may be null (nothing recorded).
  // Both must outlive this object.
  RecordedTransfers(Communicator& under, TimingRecorder* recorder, std::vector<int> world_ranks,
                    std::string channel)
      : RecordedTransfers(under, std::move(world_ranks),
                          RecordedTransfers::channel(recorder, std::move(channel))) {}
  RecordedTransfers(Communicator& under, std::vector<int> world_ranks, std::shared_ptr<Channel> channel);

  int rank() const override { return under_.rank(); }
  int size() const override { return under_.size(); }
  std::string backend_name() const override { return under_.backend_name(); }
  bool host_buffers() const override { return under_.host_buffers(); }

  void send(const void* data, size_t bytes, int peer, int tag) override {
    under_.send(data, bytes, peer, tag);
  }
  void recv(void* data, size_t bytes, int peer, int tag) override { under_.recv(data, bytes, peer, tag); }
  void sendrecv(const void* send_data, size_t send_bytes, int dst, void* recv_data, size_t recv_bytes,
                int src, int tag) override {
    under_.sendrecv(send_data, send_bytes, dst, recv_data, recv_bytes, src, tag);
  }
  std::unique_ptr<CommRequest> isend(const void* data, size_t bytes, int peer, int tag) override;
  std::unique_ptr<CommRequest> irecv(void* data, size_t bytes, int peer, int tag) override;

  void native_allreduce(void* data, size_t count, DType type, ReduceOp op) override {
    under_.native_allreduce(data, count, type, op);
  }
  void native_alltoall(const void* send_data, void* recv_data, size_t bytes_per_rank) override {
    under_.native_alltoall(send_data, recv_data, bytes_per_rank);
  }
  void native_barrier() override { under_.native_barrier(); }
  std::unique_ptr<CommRequest> native_iallreduce(void* data, size_t count, DType type, ReduceOp op) override {
    return under_.native_iallreduce(data, count, type, op);
  }
  std::unique_ptr<Communicator> split(const std::vector<int>& ranks) override { return under_.split(ranks); }

 private:
  std::unique_ptr<CommRequest> recorded(std::unique_ptr<CommRequest> inner, CollectiveOp op, size_t bytes,
                                        int peer);

  Communicator& under_;
  std::vector<int> world_ranks_;
  std::shared_ptr<Channel> channel_;  // null: nothing recorded
};

}  // namespace rondo

// TimingRecorder: the per-rank flight recorder. A bounded ring of the most recent collectives
// (sequence id, op, bytes, group size, enter/start/end times, and per-connection step times),
// always on and cheap: slots are reused without allocation once warm. Dumped as JSON on a
// timeout and summarised in step reports; fault localisation reads it.
//
// Records of a group's collectives (begin() with a RecordGroup) carry the group's name and a
// counter that is the same on every member for the same collective, and name peers by world rank:
// the fault detector (faults/) lines up the members' records of one collective by them. Each
// exchange of such a collective is also kept with its wall-clock times (up to
// kMaxExchangesPerRecord), so that a transfer's time can be measured from when both of its sides
// had posted it: a late sender is then not blamed on the link.
//
// Call order: begin() when a collective is entered; posted() when an exchange is posted, step()
// when it completed; end() when the collective completed. A Scope destroyed without end() while
// an exception unwinds (a timeout), or abandon()ed, leaves its record not completed, with the
// peers of the exchange it was waiting for; one destroyed otherwise counts as completed. A Scope
// whose slot the ring reused while it was open (more than capacity() records begun since) no
// longer touches it: its record is lost, the newer one stays as it is.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace rondo {

enum class CollectiveOp {
  kAllreduce,
  kAllgather,
  kReduceScatter,
  kAlltoall,
  kAlltoallv,
  kBroadcast,
  kBarrier,
  kNativeAllreduce,
  kNativeAlltoall,
  // Point-to-point transfers of a pipeline (activations and gradients between stages): one
  // connection, enter = posted, start = end = seen complete.
  kSend,
  kRecv,
};
const char* collective_op_name(CollectiveOp op);

// One connection of a collective: the peers of its exchanges and their aggregate timing.
struct ConnectionTiming {
  int32_t send_peer = -1;
  int32_t recv_peer = -1;
  uint32_t steps = 0;
  uint64_t bytes = 0;     // bytes sent over this connection
  uint64_t total_ns = 0;  // time spent in its exchanges
  uint64_t max_ns = 0;    // slowest single exchange
};

// One exchange of a collective as this rank saw it (wall-clock nanoseconds since the Unix epoch):
// posted, its receive complete, and both directions complete.
struct ExchangeTiming {
  int32_t send_peer = -1;
  int32_t recv_peer = -1;
  uint64_t bytes = 0;  // sent to send_peer
  int64_t posted_ns = 0;
  int64_t recv_ns = 0;
  int64_t done_ns = 0;
};

// Ranks that run the same collectives in the same order (a communicator's Collectives).
struct RecordGroup {
  std::string name;              // the same on every member, unique in the job: "dp@2", "stats"
  std::vector<int> world_ranks;  // member i's world rank; empty: member i is world rank i
  uint64_t next = 0;             // the counter the group's next collective gets
  int world_rank(int member) const;
};

struct CollectiveRecord {
  uint64_t seq = 0;
  std::string group;       // RecordGroup::name ("" outside a group: pipeline transfers)
  uint64_t group_seq = 0;  // the collective's number in its group, from 0
  CollectiveOp op = CollectiveOp::kAllreduce;
  uint64_t bytes = 0;  // payload of this rank
  int32_t group_size = 0;
  // Wall-clock nanoseconds since the Unix epoch. enter: the call; start: the first exchange
  // completed (its peers had arrived); end: the call returned. start == 0 if none completed.
  int64_t enter_ns = 0;
  int64_t start_ns = 0;
  int64_t end_ns = 0;  // 0 while the record is open
  bool completed = false;
  // The exchange posted and not yet completed: the peers this rank waits for (-1: none).
  int32_t waiting_send_peer = -1;
  int32_t waiting_recv_peer = -1;
  uint32_t dropped_connections = 0;  // connections beyond the per-record cap
  std::vector<ConnectionTiming> connections;
  std::vector<ExchangeTiming> exchanges;  // the first kMaxExchangesPerRecord, in order
};

// comms.timing_recorder_blocks: whether step `step` (from 1) is recorded when the recorder records
// `blocks` steps, pauses `blocks`, and so on (blocks 0: every step).
inline bool recorded_step(int64_t step, int64_t blocks) {
  return blocks <= 0 || (step - 1) / blocks % 2 == 0;
}

class TimingRecorder {
 public:
  static constexpr size_t kMaxConnectionsPerRecord = 64;
  static constexpr size_t kMaxExchangesPerRecord = 64;  // a ring of 33 ranks

  explicit TimingRecorder(size_t capacity);

  class Scope {
   public:
    Scope(Scope&& other) noexcept;
    Scope& operator=(Scope&&) = delete;
    ~Scope();
    // An exchange with these peers was posted (-1: no such direction); step() clears it.
    void posted(int send_peer, int recv_peer);
    // Records one exchange posted at t0 whose receive completed at `received` and both directions
    // at t1 (steady clock), moving `bytes` to `send_peer`. Peers are the group's members.
    void step(int send_peer, int recv_peer, uint64_t bytes, std::chrono::steady_clock::time_point t0,
              std::chrono::steady_clock::time_point received, std::chrono::steady_clock::time_point t1);
    void step(int send_peer, int recv_peer, uint64_t bytes, std::chrono::steady_clock::time_point t0,
              std::chrono::steady_clock::time_point t1) {
      step(send_peer, recv_peer, bytes, t0, t1, t1);
    }
    void end();
    // Closes a begin_transfer_wait() record: the transfer completed, waited for since `wait_start`.
    void end_transfer(std::chrono::steady_clock::time_point wait_start);
    // The collective will not complete (timed out, or torn down): closes the record as not completed.
    void abandon();

   private:
    friend class TimingRecorder;
    Scope(TimingRecorder* recorder, CollectiveRecord* record, const RecordGroup* group);
    int world(int member) const { return group_ && member >= 0 ? group_->world_rank(member) : member; }
    void close(bool completed);
    // The scope's record while its slot still holds it (the recorder's lock held), else null.
    CollectiveRecord* live() const;
    TimingRecorder* recorder_;
    CollectiveRecord* record_;
    uint64_t seq_;
    const RecordGroup* group_;
    int uncaught_at_begin_;
  };

  // A collective of `group` (may be null) entered: the group's counter advances.
  Scope begin(CollectiveOp op, uint64_t bytes, int group_size, RecordGroup* group = nullptr);

  // A point-to-point transfer (kSend or kRecv) posted at `posted_ns` that this rank now waits for:
  // until the Scope's end_transfer(), its record is not completed and names `peer` as the one
  // waited for (what a dump shows when the peer never comes). `channel` goes in the record's group:
  // "" for the pipeline's transfers (faults/transfer_lineup.h lines them up), another name for
  // transfers of their own (ring attention's: "ring").
  Scope begin_transfer_wait(CollectiveOp op, uint64_t bytes, int peer, int64_t posted_ns,
                            std::string_view channel = {});

  // Records a finished point-to-point transfer (kSend or kRecv) in one go: posted at `posted_ns`,
  // waited for from `wait_ns` (wall clock) until now. Transfers in flight hold no slot, so any
  // number may be outstanding.
  void record_transfer(CollectiveOp op, uint64_t bytes, int peer, int64_t posted_ns, int64_t wait_ns);

  // Paused, callers record nothing (Collectives, the pipeline's and ring attention's transfers
  // ask recording() before they begin a record); a collective's group counter does not advance,
  // so every member must pause at the same point (between steps). A measuring aid.
  void set_recording(bool on) { recording_.store(on, std::memory_order_relaxed); }
  bool recording() const { return recording_.load(std::memory_order_relaxed); }

  // Records oldest to newest (at most capacity()).
  std::vector<CollectiveRecord> snapshot() const;
  // What step reports send: each record once, when it has closed (completed or not), so a
  // collective still open at one report reaches the next. The cursor remembers the records seen
  // open; one the ring reused before it closed is never reported.
  struct ReportCursor {
    uint64_t next = 0;           // the first record not yet seen
    std::vector<uint64_t> open;  // records seen while open
  };
  std::vector<CollectiveRecord> take_closed(ReportCursor& cursor) const;
  size_t capacity() const { return slots_.size(); }
  uint64_t recorded() const;

  // JSON of a snapshot: {"rank":..,"records":[...]} for dumps and step reports.
  static nlohmann::json to_json(const std::vector<CollectiveRecord>& records, int rank);

  static int64_t wall_ns();

 private:
  mutable std::mutex mu_;
  std::vector<CollectiveRecord> slots_;
  uint64_t next_seq_ = 0;
  std::atomic<bool> recording_{true};
};

}  // namespace rondo

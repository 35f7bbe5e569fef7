#include "comms/timing_recorder.h"

#include <algorithm>
#include <exception>
#include <nlohmann/json.hpp>

namespace rondo {

const char* collective_op_name(CollectiveOp op) {
  switch (op) {
    case CollectiveOp::kAllreduce:
      return "allreduce";
    case CollectiveOp::kAllgather:
      return "allgather";
    case CollectiveOp::kReduceScatter:
      return "reduce_scatter";
    case CollectiveOp::kAlltoall:
      return "alltoall";
    case CollectiveOp::kAlltoallv:
      return "alltoallv";
    case CollectiveOp::kBroadcast:
      return "broadcast";
    case CollectiveOp::kBarrier:
      return "barrier";
    case CollectiveOp::kNativeAllreduce:
      return "native_allreduce";
    case CollectiveOp::kNativeAlltoall:
      return "native_alltoall";
    case CollectiveOp::kSend:
      return "send";
    case CollectiveOp::kRecv:
      return "recv";
  }
  return "?";
}

int RecordGroup::world_rank(int member) const {
  return member >= 0 && static_cast<size_t>(member) < world_ranks.size()
             ? world_ranks[static_cast<size_t>(member)]
             : member;
}

TimingRecorder::TimingRecorder(size_t capacity) : slots_(std::max<size_t>(capacity, 1)) {
  for (auto& s : slots_) s.connections.reserve(8);
}

namespace {

// A steady-clock time point as wall-clock nanoseconds, given the two clocks read at one moment.
int64_t wall_of(std::chrono::steady_clock::time_point t, std::chrono::steady_clock::time_point now_steady,
                int64_t now_wall) {
  return now_wall - std::chrono::duration_cast<std::chrono::nanoseconds>(now_steady - t).count();
}

}  // namespace

int64_t TimingRecorder::wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

TimingRecorder::Scope TimingRecorder::begin(CollectiveOp op, uint64_t bytes, int group_size,
                                            RecordGroup* group) {
  std::lock_guard lock(mu_);
  CollectiveRecord& r = slots_[next_seq_ % slots_.size()];
  r.seq = next_seq_++;
  if (group) {
    r.group = group->name;  // reuses the slot's capacity once warm
    r.group_seq = group->next++;
  } else {
    r.group.clear();
    r.group_seq = 0;
  }
  r.exchanges.clear();
  r.op = op;
  r.bytes = bytes;
  r.group_size = group_size;
  r.enter_ns = wall_ns();
  r.start_ns = 0;
  r.end_ns = 0;
  r.completed = false;
  r.waiting_send_peer = r.waiting_recv_peer = -1;
  r.dropped_connections = 0;
  r.connections.clear();  // keeps capacity: no allocation once warm
  return Scope(this, &r, group);
}

TimingRecorder::Scope TimingRecorder::begin_transfer_wait(CollectiveOp op, uint64_t bytes, int peer,
                                                          int64_t posted_ns, std::string_view channel) {
  auto scope = begin(op, bytes, 2);
  std::lock_guard lock(mu_);
  if (auto* r = scope.live()) {
    r->group = channel;
    r->enter_ns = posted_ns;
    const bool send = op == CollectiveOp::kSend;
    r->waiting_send_peer = send ? peer : -1;
    r->waiting_recv_peer = send ? -1 : peer;
  }
  return scope;
}

void TimingRecorder::record_transfer(CollectiveOp op, uint64_t bytes, int peer, int64_t posted_ns,
                                     int64_t wait_ns) {
  const int64_t now = wall_ns();
  std::lock_guard lock(mu_);
  CollectiveRecord& r = slots_[next_seq_ % slots_.size()];
  r.seq = next_seq_++;
  r.group.clear();
  r.group_seq = 0;
  r.exchanges.clear();
  r.op = op;
  r.bytes = bytes;
  r.group_size = 2;
  r.enter_ns = posted_ns;
  r.start_ns = wait_ns;
  r.end_ns = now;
  r.completed = true;
  r.waiting_send_peer = r.waiting_recv_peer = -1;
  r.dropped_connections = 0;
  r.connections.clear();
  const bool send = op == CollectiveOp::kSend;
  const auto waited = static_cast<uint64_t>(std::max<int64_t>(0, now - wait_ns));
  r.connections.push_back(
      ConnectionTiming{send ? peer : -1, send ? -1 : peer, 1, send ? bytes : 0, waited, waited});
}

TimingRecorder::Scope::Scope(TimingRecorder* recorder, CollectiveRecord* record, const RecordGroup* group)
    : recorder_(recorder),
      record_(record),
      seq_(record->seq),
      group_(group),
      uncaught_at_begin_(std::uncaught_exceptions()) {}

TimingRecorder::Scope::Scope(Scope&& other) noexcept
    : recorder_(other.recorder_),
      record_(other.record_),
      seq_(other.seq_),
      group_(other.group_),
      uncaught_at_begin_(other.uncaught_at_begin_) {
  other.recorder_ = nullptr;
  other.record_ = nullptr;
}

CollectiveRecord* TimingRecorder::Scope::live() const {
  return record_ && record_->seq == seq_ ? record_ : nullptr;
}

TimingRecorder::Scope::~Scope() {
  // Unwinding past an open record means the collective failed (a timeout, a dead peer): it must
  // not read as completed in the dump that follows.
  close(std::uncaught_exceptions() <= uncaught_at_begin_);
}

void TimingRecorder::Scope::posted(int send_peer, int recv_peer) {
  if (!record_) return;
  std::lock_guard lock(recorder_->mu_);
  auto* r = live();
  if (!r) return;
  r->waiting_send_peer = world(send_peer);
  r->waiting_recv_peer = world(recv_peer);
}

void TimingRecorder::Scope::step(int send_member, int recv_member, uint64_t bytes,
                                 std::chrono::steady_clock::time_point t0,
                                 std::chrono::steady_clock::time_point received,
                                 std::chrono::steady_clock::time_point t1) {
  if (!record_) return;
  const int send_peer = world(send_member), recv_peer = world(recv_member);
  const auto ns =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
  const auto now_steady = std::chrono::steady_clock::now();
  const int64_t now_wall = wall_ns();
  std::lock_guard lock(recorder_->mu_);
  auto* r = live();
  if (!r) return;
  r->waiting_send_peer = r->waiting_recv_peer = -1;
  if (r->start_ns == 0) r->start_ns = now_wall;
  if (r->exchanges.size() < kMaxExchangesPerRecord) {
    r->exchanges.push_back(ExchangeTiming{send_peer, recv_peer, bytes, wall_of(t0, now_steady, now_wall),
                                          wall_of(received, now_steady, now_wall),
                                          wall_of(t1, now_steady, now_wall)});
  }
  auto& conns = r->connections;
  auto it = std::find_if(conns.begin(), conns.end(), [&](const ConnectionTiming& c) {
    return c.send_peer == send_peer && c.recv_peer == recv_peer;
  });
  if (it == conns.end()) {
    if (conns.size() >= kMaxConnectionsPerRecord) {
      ++r->dropped_connections;
      return;
    }
    conns.push_back(ConnectionTiming{send_peer, recv_peer, 0, 0, 0, 0});
    it = conns.end() - 1;
  }
  it->steps += 1;
  it->bytes += bytes;
  it->total_ns += ns;
  it->max_ns = std::max(it->max_ns, ns);
}

void TimingRecorder::Scope::end() { close(true); }

void TimingRecorder::Scope::end_transfer(std::chrono::steady_clock::time_point wait_start) {
  if (!record_) return;
  const auto waited = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - wait_start)
          .count());
  {
    std::lock_guard lock(recorder_->mu_);
    if (auto* r = live()) {
      const bool send = r->op == CollectiveOp::kSend;
      const int peer = send ? r->waiting_send_peer : r->waiting_recv_peer;
      r->start_ns = wall_ns();
      r->connections.push_back(
          ConnectionTiming{send ? peer : -1, send ? -1 : peer, 1, send ? r->bytes : 0, waited, waited});
    }
  }
  close(true);
}

void TimingRecorder::Scope::abandon() { close(false); }

void TimingRecorder::Scope::close(bool completed) {
  if (!record_) return;
  std::lock_guard lock(recorder_->mu_);
  if (auto* r = live()) {
    r->end_ns = wall_ns();
    r->completed = completed;
    if (completed) r->waiting_send_peer = r->waiting_recv_peer = -1;
  }
  record_ = nullptr;
}

std::vector<CollectiveRecord> TimingRecorder::snapshot() const {
  std::lock_guard lock(mu_);
  std::vector<CollectiveRecord> out;
  const uint64_t oldest = next_seq_ - std::min<uint64_t>(next_seq_, slots_.size());
  for (uint64_t seq = oldest; seq < next_seq_; ++seq) out.push_back(slots_[seq % slots_.size()]);
  return out;
}

std::vector<CollectiveRecord> TimingRecorder::take_closed(ReportCursor& cursor) const {
  std::lock_guard lock(mu_);
  const uint64_t oldest = next_seq_ - std::min<uint64_t>(next_seq_, slots_.size());
  std::vector<CollectiveRecord> out;
  std::vector<uint64_t> still_open;
  const auto visit = [&](uint64_t seq) {
    if (seq < oldest) return;  // reused before it closed: lost
    const auto& r = slots_[seq % slots_.size()];
    if (r.end_ns != 0) {
      out.push_back(r);
    } else {
      still_open.push_back(seq);
    }
  };
  for (uint64_t seq : cursor.open) visit(seq);
  for (uint64_t seq = std::max(oldest, cursor.next); seq < next_seq_; ++seq) visit(seq);
  cursor.next = next_seq_;
  cursor.open = std::move(still_open);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; });
  return out;
}

uint64_t TimingRecorder::recorded() const {
  std::lock_guard lock(mu_);
  return next_seq_;
}

nlohmann::json TimingRecorder::to_json(const std::vector<CollectiveRecord>& records, int rank) {
  nlohmann::json out;
  out["rank"] = rank;
  auto& list = out["records"] = nlohmann::json::array();
  for (const auto& r : records) {
    nlohmann::json conns = nlohmann::json::array();
    for (const auto& c : r.connections) {
      conns.push_back({{"send_peer", c.send_peer},
                       {"recv_peer", c.recv_peer},
                       {"steps", c.steps},
                       {"bytes", c.bytes},
                       {"total_ns", c.total_ns},
                       {"max_ns", c.max_ns}});
    }
    nlohmann::json exchanges = nlohmann::json::array();
    for (const auto& e : r.exchanges) {
      exchanges.push_back({{"send_peer", e.send_peer},
                           {"recv_peer", e.recv_peer},
                           {"bytes", e.bytes},
                           {"posted_ns", e.posted_ns},
                           {"recv_ns", e.recv_ns},
                           {"done_ns", e.done_ns}});
    }
    list.push_back({{"seq", r.seq},
                    {"group", r.group},
                    {"group_seq", r.group_seq},
                    {"op", collective_op_name(r.op)},
                    {"bytes", r.bytes},
                    {"group_size", r.group_size},
                    {"enter_ns", r.enter_ns},
                    {"start_ns", r.start_ns},
                    {"end_ns", r.end_ns},
                    {"completed", r.completed},
                    {"waiting_send_peer", r.waiting_send_peer},
                    {"waiting_recv_peer", r.waiting_recv_peer},
                    {"dropped_connections", r.dropped_connections},
                    {"connections", std::move(conns)},
                    {"exchanges", std::move(exchanges)}});
  }
  return out;
}

}  // namespace rondo

#include "comms/collectives.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <thread>

#include "common/errors.h"

namespace rondo {
namespace {

// Tags of rondo's collectives; user point-to-point traffic uses tags below kTagBase.
constexpr int kTagBase = 1 << 20;
constexpr int kTagRingReduce = kTagBase + 1;
constexpr int kTagRingGather = kTagBase + 2;
constexpr int kTagAlltoall = kTagBase + 3;
constexpr int kTagBroadcast = kTagBase + 4;
constexpr int kTagBarrier = kTagBase + 5;

// Block b of a count split into n nearly equal blocks (the first count % n get one more).
struct Blocks {
  size_t count;
  int n;
  size_t size(int b) const {
    return count / static_cast<size_t>(n) + (static_cast<size_t>(b) < count % static_cast<size_t>(n) ? 1 : 0);
  }
  size_t offset(int b) const {
    const size_t base = count / static_cast<size_t>(n), extra = count % static_cast<size_t>(n);
    const auto ub = static_cast<size_t>(b);
    return ub * base + std::min(ub, extra);
  }
};

int mod(int a, int n) { return ((a % n) + n) % n; }

// When a transfer of `bytes` begun at `t0` ends on an emulated link of `bps` bytes/s (0: off).
std::chrono::steady_clock::time_point emulated_transfer_end(std::chrono::steady_clock::time_point t0,
                                                            size_t bytes, double bps) {
  if (bps <= 0) return t0;
  return t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                  std::chrono::duration<double>(static_cast<double>(bytes) / bps));
}

}  // namespace

Collectives::Collectives(Communicator& comm, TimingRecorder* recorder) : comm_(comm), recorder_(recorder) {}

void Collectives::set_group(std::string name, std::vector<int> world_ranks) {
  group_.name = std::move(name);
  group_.world_ranks = std::move(world_ranks);
}

void Collectives::set_ring_order(std::vector<int> order) {
  const int n = comm_.size();
  if (!order.empty()) {
    std::vector<int> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    for (int i = 0; i < n; ++i) {
      if (static_cast<int>(sorted.size()) != n || sorted[static_cast<size_t>(i)] != i) {
        throw CommError(comm_.rank(), -1,
                        "ring order must list each of the group's " + std::to_string(n) + " members once");
      }
    }
  }
  ring_order_ = std::move(order);
}

std::optional<TimingRecorder::Scope> Collectives::record(CollectiveOp op, uint64_t bytes) {
  if (!recorder_ || !recorder_->recording()) return std::nullopt;
  return recorder_->begin(op, bytes, comm_.size(), &group_);
}

void Collectives::require_host(const char* op) const {
  if (!comm_.host_buffers()) {
    throw CommError(comm_.rank(), -1,
                    std::string("backend ") + comm_.backend_name() + " cannot run rondo's " + op +
                        " (it reduces on the host); use comms.allreduce=native");
  }
}

std::vector<char>& Collectives::scratch(size_t bytes) {
  if (scratch_.size() < bytes) scratch_.resize(bytes);
  return scratch_;
}

void Collectives::throttle(std::chrono::steady_clock::time_point t0, size_t bytes) const {
  if (emulated_link_bps_ > 0)
    std::this_thread::sleep_until(emulated_transfer_end(t0, bytes, emulated_link_bps_));
}

void Collectives::exchange(TimingRecorder::Scope* scope, const void* send, size_t send_bytes, int dst,
                           void* recv, size_t recv_bytes, int src, int tag) {
  const auto t0 = std::chrono::steady_clock::now();
  if (scope) scope->posted(dst, src);
  comm_.sendrecv(send, send_bytes, dst, recv, recv_bytes, src, tag);
  throttle(t0, std::max(send_bytes, recv_bytes));
  if (scope) scope->step(dst, src, send_bytes, t0, std::chrono::steady_clock::now());
}

void PendingCollective::wait() {
  const auto timeout = std::chrono::duration_cast<Clock::duration>(comm_.timeout());
  PollBackoff backoff;
  uint64_t seen = steps_done_;
  auto deadline = Clock::now() + timeout;
  while (!progress()) {
    const auto now = Clock::now();
    if (steps_done_ != seen) {
      seen = steps_done_;
      deadline = now + timeout;
    }
    if (now < hold_until_) {
      std::this_thread::sleep_until(hold_until_);  // the emulated link is still busy
    } else if (now > deadline) {
      throw TimeoutError(comm_.rank(), -1,
                         what_ + " made no progress within " + std::to_string(comm_.timeout().count()) +
                             " s (step " + std::to_string(steps_done_) + ", backend " + comm_.backend_name() +
                             ")");
    } else {
      backoff.pause();
    }
  }
}

namespace {

// Ring allreduce = reduce-scatter + allgather over the ring neighbours, one exchange per step:
// at reduce-scatter step s rank r sends block r-s-1 and reduces block r-s-2 into its own copy (it
// ends owning the full reduction of block r); at allgather step s it forwards block r-s and
// receives block r-s-1 in place.
class RingAllreduce : public PendingCollective {
 public:
  RingAllreduce(Communicator& comm, std::optional<TimingRecorder::Scope> scope, void* data, size_t count,
                DType type, ReduceOp op, double emulated_link_bps, char* scratch,
                const std::vector<int>& order)
      : PendingCollective(comm, "ring allreduce of " + std::to_string(count * dtype_size(type)) + " bytes"),
        base_(static_cast<char*>(data)),
        blocks_{count, comm.size()},
        type_(type),
        op_(op),
        es_(dtype_size(type)),
        link_bps_(emulated_link_bps),
        tmp_(scratch),
        scope_(std::move(scope)) {
    const int n = comm.size();
    // The ring runs over positions: this member's position, and the members before and after it.
    int position = comm.rank();
    if (!order.empty()) {
      position = static_cast<int>(std::find(order.begin(), order.end(), comm.rank()) - order.begin());
    }
    const auto member = [&](int p) {
      return order.empty() ? mod(p, n) : order[static_cast<size_t>(mod(p, n))];
    };
    position_ = position;
    next_ = member(position + 1);
    prev_ = member(position - 1);
    total_steps_ = (n == 1 || count == 0) ? 0 : 2 * (n - 1);
  }

  bool progress() override {
    const int n = comm_.size(), r = position_, next = next_, prev = prev_;
    while (step_ < total_steps_) {
      const bool gather = step_ >= n - 1;
      const int s = gather ? step_ - (n - 1) : step_;
      const int sb = gather ? mod(r - s, n) : mod(r - s - 1, n);
      const int rb = gather ? mod(r - s - 1, n) : mod(r - s - 2, n);
      if (!recv_) {
        void* into = gather ? static_cast<void*>(base_ + blocks_.offset(rb) * es_) : tmp_;
        const int tag = gather ? kTagRingGather : kTagRingReduce;
        t0_ = Clock::now();
        if (scope_) scope_->posted(next, prev);
        received_.reset();
        recv_ = comm_.irecv(into, blocks_.size(rb) * es_, prev, tag);
        send_ = comm_.isend(base_ + blocks_.offset(sb) * es_, blocks_.size(sb) * es_, next, tag);
        hold_until_ =
            emulated_transfer_end(t0_, std::max(blocks_.size(sb), blocks_.size(rb)) * es_, link_bps_);
      }
      if (!received_) {
        if (!recv_->test()) return false;
        received_ = Clock::now();
      }
      if (!send_->test() || Clock::now() < hold_until_) return false;
      recv_.reset();
      send_.reset();
      if (scope_) scope_->step(next, prev, blocks_.size(sb) * es_, t0_, *received_, Clock::now());
      if (!gather) reduce_into(base_ + blocks_.offset(rb) * es_, tmp_, blocks_.size(rb), type_, op_);
      ++step_;
      ++steps_done_;
    }
    if (scope_) {
      scope_->end();
      scope_.reset();
    }
    return true;
  }
  // Torn down before it completed (its wait timed out): the record says so.
  ~RingAllreduce() override {
    if (scope_) scope_->abandon();
  }

 private:
  char* base_;
  Blocks blocks_;
  DType type_;
  ReduceOp op_;
  size_t es_;
  double link_bps_;
  int step_ = 0;
  int total_steps_ = 0;
  int position_ = 0, next_ = 0, prev_ = 0;  // in the ring: this member's place and its neighbours
  char* tmp_;  // receives a block to reduce: the Collectives' scratch (one collective in flight)
  std::unique_ptr<CommRequest> recv_, send_;
  Clock::time_point t0_{};
  std::optional<Clock::time_point> received_;  // when this step's receive completed
  std::optional<TimingRecorder::Scope> scope_;
};

// A library collective's exchanges are not visible to the recorder; of two members, though, the
// one waited for is the other.
void post_only_peer(TimingRecorder::Scope& scope, const Communicator& comm) {
  if (comm.size() == 2) scope.posted(1 - comm.rank(), 1 - comm.rank());
}

class NativeAllreduce : public PendingCollective {
 public:
  NativeAllreduce(Communicator& comm, std::optional<TimingRecorder::Scope> scope, void* data, size_t count,
                  DType type, ReduceOp op)
      : PendingCollective(comm, "native allreduce of " + std::to_string(count * dtype_size(type)) + " bytes"),
        scope_(std::move(scope)) {
    if (scope_) post_only_peer(*scope_, comm);
    request_ = comm.native_iallreduce(data, count, type, op);
  }
  bool progress() override {
    if (!request_->test()) return false;
    if (scope_) {
      scope_->end();
      scope_.reset();
    }
    ++steps_done_;
    return true;
  }

  ~NativeAllreduce() override {
    if (scope_) scope_->abandon();
  }

 private:
  std::optional<TimingRecorder::Scope> scope_;
  std::unique_ptr<CommRequest> request_;
};

}  // namespace

std::vector<AlltoallPair> alltoall_pairs(const Communicator& comm, const void* send,
                                         const std::vector<size_t>& send_counts, void* recv,
                                         const std::vector<size_t>& recv_counts, DType type,
                                         size_t& send_bytes) {
  const int n = comm.size(), r = comm.rank();
  if (send_counts.size() != static_cast<size_t>(n) || recv_counts.size() != static_cast<size_t>(n)) {
    throw CommError(r, -1, "alltoallv: counts must have one entry per rank");
  }
  const size_t es = dtype_size(type);
  std::vector<size_t> sdispl(static_cast<size_t>(n) + 1, 0), rdispl(static_cast<size_t>(n) + 1, 0);
  for (size_t j = 0; j < static_cast<size_t>(n); ++j) {
    sdispl[j + 1] = sdispl[j] + send_counts[j] * es;
    rdispl[j + 1] = rdispl[j] + recv_counts[j] * es;
  }
  send_bytes = sdispl.back();
  const auto ur = static_cast<size_t>(r);
  if (send_counts[ur] != recv_counts[ur]) {
    throw CommError(r, r, "alltoallv: the block a rank sends itself must match what it receives");
  }
  const auto* in = static_cast<const char*>(send);
  auto* out = static_cast<char*>(recv);
  std::memcpy(out + rdispl[ur], in + sdispl[ur], send_counts[ur] * es);
  // Pairwise order: at step s send to r+s and receive from r-s, so every pair meets once.
  std::vector<AlltoallPair> pairs;
  for (int s = 1; s < n; ++s) {
    const auto dst = static_cast<size_t>(mod(r + s, n)), src = static_cast<size_t>(mod(r - s, n));
    pairs.push_back({static_cast<int>(dst), static_cast<int>(src), in + sdispl[dst], send_counts[dst] * es,
                     out + rdispl[src], recv_counts[src] * es});
  }
  return pairs;
}

namespace {

// All-to-all(v) with every transfer posted at once; a connection's time is recorded when both of
// its directions have completed. Its receive is timed at the last poll that found it unfinished,
// the earliest it can have arrived: the MoE pipeline polls between expert computations, and the
// time a received chunk waits for the next poll is the receiver's compute, not its link's (nor a
// stall of its sender: each pair goes on without the others).
class PostedAlltoallv : public PendingCollective {
 public:
  using Pair = AlltoallPair;
  PostedAlltoallv(Communicator& comm, std::optional<TimingRecorder::Scope> scope, std::vector<Pair> pairs,
                  double emulated_link_bps)
      : PendingCollective(comm, "all-to-all over " + std::to_string(comm.size()) + " ranks"),
        scope_(std::move(scope)),
        t0_(Clock::now()) {
    for (const auto& p : pairs) {
      if (scope_) scope_->posted(p.dst, p.src);
      auto& open = open_.emplace_back();
      open.pair = p;
      open.unfinished_at = t0_;
      open.recv = comm.irecv(p.recv, p.recv_bytes, p.src, kTagAlltoall);
      open.send = comm.isend(p.send, p.send_bytes, p.dst, kTagAlltoall);
      hold_until_ = std::max(
          hold_until_, emulated_transfer_end(t0_, std::max(p.send_bytes, p.recv_bytes), emulated_link_bps));
    }
  }
  bool progress() override {
    const auto polled = Clock::now();
    for (auto& o : open_) {
      if (o.done) continue;
      if (!o.received) {
        if (o.recv->test()) {
          o.received = o.unfinished_at;
        } else {
          o.unfinished_at = polled;
        }
      }
      if (!o.received || !o.send->test()) continue;
      o.done = true;
      ++steps_done_;
      if (scope_) scope_->step(o.pair.dst, o.pair.src, o.pair.send_bytes, t0_, *o.received, Clock::now());
    }
    if (steps_done_ < open_.size() || Clock::now() < hold_until_) return false;
    if (scope_) {
      scope_->end();
      scope_.reset();
    }
    return true;
  }
  ~PostedAlltoallv() override {
    if (scope_) scope_->abandon();
  }

 private:
  struct Open {
    Pair pair{};
    std::unique_ptr<CommRequest> recv, send;
    Clock::time_point unfinished_at;  // the last poll that found the receive unfinished
    std::optional<Clock::time_point> received;
    bool done = false;
  };
  std::optional<TimingRecorder::Scope> scope_;
  Clock::time_point t0_;
  std::vector<Open> open_;
};

}  // namespace

std::unique_ptr<PendingCollective> Collectives::start_alltoallv(const void* send,
                                                                const std::vector<size_t>& send_counts,
                                                                void* recv,
                                                                const std::vector<size_t>& recv_counts,
                                                                DType type) {
  require_host("pairwise alltoall");
  size_t bytes = 0;
  auto pairs = alltoall_pairs(comm_, send, send_counts, recv, recv_counts, type, bytes);
  return std::make_unique<PostedAlltoallv>(comm_, record(CollectiveOp::kAlltoallv, bytes), std::move(pairs),
                                           emulated_link_bps_);
}

std::unique_ptr<PendingCollective> Collectives::start_allreduce(void* data, size_t count, DType type,
                                                                ReduceOp op) {
  require_host("ring allreduce");
  const size_t largest_block = Blocks{count, comm_.size()}.size(0) * dtype_size(type);
  return std::make_unique<RingAllreduce>(comm_, record(CollectiveOp::kAllreduce, count * dtype_size(type)),
                                         data, count, type, op, emulated_link_bps_,
                                         scratch(largest_block).data(), ring_order_);
}

std::unique_ptr<PendingCollective> Collectives::start_native_allreduce(void* data, size_t count, DType type,
                                                                       ReduceOp op) {
  return std::make_unique<NativeAllreduce>(
      comm_, record(CollectiveOp::kNativeAllreduce, count * dtype_size(type)), data, count, type, op);
}

void Collectives::allreduce(void* data, size_t count, DType type, ReduceOp op) {
  start_allreduce(data, count, type, op)->wait();
}

void Collectives::reduce_scatter(const void* send, void* recv, size_t recv_count, DType type, ReduceOp op) {
  require_host("ring reduce-scatter");
  const int n = comm_.size(), r = comm_.rank();
  const size_t es = dtype_size(type), block = recv_count * es;
  auto scope = record(CollectiveOp::kReduceScatter, block * n);
  // Work on a copy so that `send` stays untouched.
  auto& work = scratch(block * static_cast<size_t>(n) + block);
  std::memcpy(work.data(), send, block * static_cast<size_t>(n));
  char* tmp = work.data() + block * static_cast<size_t>(n);
  const int next = mod(r + 1, n), prev = mod(r - 1, n);
  for (int s = 0; s < n - 1; ++s) {
    const int sb = mod(r - s - 1, n), rb = mod(r - s - 2, n);
    exchange(scope ? &*scope : nullptr, work.data() + block * static_cast<size_t>(sb), block, next, tmp,
             block, prev, kTagRingReduce);
    reduce_into(work.data() + block * static_cast<size_t>(rb), tmp, recv_count, type, op);
  }
  std::memcpy(recv, work.data() + block * static_cast<size_t>(r), block);
}

void Collectives::allgather(const void* send, void* recv, size_t count, DType type) {
  require_host("ring allgather");
  const int n = comm_.size(), r = comm_.rank();
  const size_t block = count * dtype_size(type);
  auto scope = record(CollectiveOp::kAllgather, block);
  auto* out = static_cast<char*>(recv);
  std::memcpy(out + block * static_cast<size_t>(r), send, block);
  const int next = mod(r + 1, n), prev = mod(r - 1, n);
  for (int s = 0; s < n - 1; ++s) {
    const int sb = mod(r - s, n), rb = mod(r - s - 1, n);
    exchange(scope ? &*scope : nullptr, out + block * static_cast<size_t>(sb), block, next,
             out + block * static_cast<size_t>(rb), block, prev, kTagRingGather);
  }
}

void Collectives::alltoall(const void* send, void* recv, size_t count, DType type) {
  const int n = comm_.size();
  alltoallv(send, std::vector<size_t>(static_cast<size_t>(n), count), recv,
            std::vector<size_t>(static_cast<size_t>(n), count), type);
}

void Collectives::alltoallv(const void* send, const std::vector<size_t>& send_counts, void* recv,
                            const std::vector<size_t>& recv_counts, DType type) {
  require_host("pairwise alltoall");
  size_t bytes = 0;
  const auto pairs = alltoall_pairs(comm_, send, send_counts, recv, recv_counts, type, bytes);
  auto scope = record(CollectiveOp::kAlltoallv, bytes);
  for (const auto& p : pairs) {
    exchange(scope ? &*scope : nullptr, p.send, p.send_bytes, p.dst, p.recv, p.recv_bytes, p.src,
             kTagAlltoall);
  }
}

void Collectives::broadcast(void* data, size_t count, DType type, int root) {
  const int n = comm_.size(), r = comm_.rank();
  const size_t bytes = count * dtype_size(type);
  auto scope = record(CollectiveOp::kBroadcast, bytes);
  // Binomial tree over ranks relative to the root.
  const int rel = mod(r - root, n);
  int mask = 1;
  while (mask < n) {
    if (rel & mask) {
      const int src = mod(rel - mask + root, n);
      const auto t0 = std::chrono::steady_clock::now();
      comm_.recv(data, bytes, src, kTagBroadcast);
      throttle(t0, bytes);
      if (scope) scope->step(-1, src, 0, t0, std::chrono::steady_clock::now());
      break;
    }
    mask <<= 1;
  }
  mask >>= 1;
  while (mask > 0) {
    if (rel + mask < n) {
      const int dst = mod(rel + mask + root, n);
      const auto t0 = std::chrono::steady_clock::now();
      comm_.send(data, bytes, dst, kTagBroadcast);
      throttle(t0, bytes);
      if (scope) scope->step(dst, -1, bytes, t0, std::chrono::steady_clock::now());
    }
    mask >>= 1;
  }
}

void Collectives::barrier() {
  if (!comm_.host_buffers()) return comm_.native_barrier();  // its exchanges use host bytes
  const int n = comm_.size(), r = comm_.rank();
  auto scope = record(CollectiveOp::kBarrier, 0);
  char out = 0, in = 0;
  // Dissemination: after ceil(log2 n) rounds every rank has heard from every other.
  for (int k = 1; k < n; k <<= 1) {
    exchange(scope ? &*scope : nullptr, &out, 1, mod(r + k, n), &in, 1, mod(r - k, n), kTagBarrier);
  }
}

void Collectives::native_allreduce(void* data, size_t count, DType type, ReduceOp op) {
  auto scope = record(CollectiveOp::kNativeAllreduce, count * dtype_size(type));
  if (scope) post_only_peer(*scope, comm_);
  comm_.native_allreduce(data, count, type, op);
}

void Collectives::native_alltoall(const void* send, void* recv, size_t count, DType type) {
  const size_t bytes = count * dtype_size(type);
  auto scope = record(CollectiveOp::kNativeAlltoall, bytes * comm_.size());
  comm_.native_alltoall(send, recv, bytes);
}

}  // namespace rondo

#include "pipeline/exec/shared_replica_state.h"

#include <algorithm>
#include <atomic>
#include <string>

#include "common/errors.h"

namespace rondo {

namespace {

constexpr size_t kTicketStride = 64 / sizeof(uint32_t);  // a cache line per ticket
constexpr size_t kAlign = 64;

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

}  // namespace

SharedReplicaState::SharedReplicaState(std::unique_ptr<Communicator> replica,
                                       const std::vector<int64_t>& stage_elements, int microbatches,
                                       std::vector<int64_t> boundary_shape, int versions)
    : replica_(std::move(replica)),
      microbatches_(microbatches),
      versions_(versions),
      boundary_shape_(std::move(boundary_shape)) {
  if (versions_ != 1 && versions_ != 2)
    throw PlanError("stateless workers: 1 or 2 weight versions, not " + std::to_string(versions_));
  boundary_elements_ = 1;
  for (auto d : boundary_shape_) boundary_elements_ *= d;
  const int stages = static_cast<int>(stage_elements.size());
  stages_.resize(static_cast<size_t>(stages));
  for (int w = 0; w < replica_->size(); ++w) {
    if (w == replica_->rank()) owned_.offset = elements_;
    for (int k = w; k < stages; k += replica_->size()) {
      stages_[static_cast<size_t>(k)] = {elements_, stage_elements[static_cast<size_t>(k)]};
      elements_ += stage_elements[static_cast<size_t>(k)];
    }
    if (w == replica_->rank()) owned_.count = elements_ - owned_.offset;
  }
  const size_t slots =
      static_cast<size_t>(versions_) * static_cast<size_t>(stages) * static_cast<size_t>(microbatches);
  const size_t per_stage = align_up(static_cast<size_t>(stages) * kTicketStride * sizeof(uint32_t));
  const size_t ticket_bytes = 2 * per_stage + align_up(slots * sizeof(uint32_t));
  const size_t flat_bytes = align_up(static_cast<size_t>(elements_) * sizeof(float));
  const size_t boundary_bytes = slots * static_cast<size_t>(boundary_elements_) * sizeof(float);
  // Weights (one per version), gradients, two optimizer moments, boundaries.
  const size_t flats = static_cast<size_t>(versions_) + 3;
  memory_ = NodeSharedMemory::create(*replica_, ticket_bytes + flats * flat_bytes + boundary_bytes,
                                     "the stateless workers' weights, gradients and activations");
  auto* base = static_cast<char*>(memory_->data());
  tickets_ = reinterpret_cast<uint32_t*>(base);
  updated_ = reinterpret_cast<uint32_t*>(base + per_stage);
  written_ = reinterpret_cast<uint32_t*>(base + 2 * per_stage);
  const auto floats = torch::TensorOptions().dtype(torch::kFloat32);
  const auto stride = static_cast<int64_t>(flat_bytes / sizeof(float));
  char* at = base + ticket_bytes;
  params_ = torch::from_blob(at, {versions_, elements_}, {stride, 1}, floats);
  at += static_cast<size_t>(versions_) * flat_bytes;
  grads_ = torch::from_blob(at, {elements_}, floats);
  at += flat_bytes;
  moments_ = torch::from_blob(at, {2, elements_}, {stride, 1}, floats);
  at += 2 * flat_bytes;
  boundaries_ = torch::from_blob(at, {static_cast<int64_t>(slots) * boundary_elements_}, floats);
}

torch::Tensor SharedReplicaState::boundary(int stage, int microbatch, int64_t step) const {
  return boundaries_
      .narrow(0, static_cast<int64_t>(slot(stage, microbatch, step)) * boundary_elements_, boundary_elements_)
      .view(boundary_shape_);
}

void SharedReplicaState::mark_boundary(int stage, int microbatch, int64_t step) {
  std::atomic_ref<uint32_t>(written_[slot(stage, microbatch, step)])
      .store(static_cast<uint32_t>(step + 1), std::memory_order_release);
}

void SharedReplicaState::wait_boundary(int stage, int microbatch, int64_t step,
                                       std::chrono::duration<double> timeout) {
  std::atomic_ref<uint32_t> written(written_[slot(stage, microbatch, step)]);
  const auto want = static_cast<uint32_t>(step + 1);
  if (written.load(std::memory_order_acquire) == want) return;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  PollBackoff backoff;
  while (written.load(std::memory_order_acquire) != want) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw TimeoutError(replica_->rank(), -1,
                         "stateless workers: the forward never left the input of backward stage " +
                             std::to_string(stage) + " microbatch " + std::to_string(microbatch) +
                             " of step " + std::to_string(step) + " after " +
                             std::to_string(timeout.count()) + " s");
    }
    try_flush();
    backoff.pause();
  }
}

uint32_t SharedReplicaState::ticket(int stage) const {
  return std::atomic_ref<uint32_t>(tickets_[static_cast<size_t>(stage) * kTicketStride])
      .load(std::memory_order_acquire);
}

bool SharedReplicaState::add_if_turn(int stage, int microbatch, int64_t step,
                                     const torch::Tensor& gradients) {
  if (ticket(stage) != turn(step, microbatch)) return false;
  const auto r = stages_[static_cast<size_t>(stage)];
  grads_.narrow(0, r.offset, r.count).add_(gradients);
  std::atomic_ref<uint32_t>(tickets_[static_cast<size_t>(stage) * kTicketStride])
      .store(turn(step, microbatch) + 1, std::memory_order_release);
  return true;
}

void SharedReplicaState::accumulate(int stage, int microbatch, int64_t step, const torch::Tensor& local) {
  torch::NoGradGuard no_grad;
  if (pending_.empty() && add_if_turn(stage, microbatch, step, local)) {
    local.zero_();
    return;
  }
  pending_.push_back({stage, microbatch, step, local.clone()});
  local.zero_();
  try_flush();
}

bool SharedReplicaState::try_flush() {
  torch::NoGradGuard no_grad;
  // One addition may open the turn of another queued one: retry until nothing moves.
  for (bool moved = true; moved && !pending_.empty();) {
    moved = false;
    std::erase_if(pending_, [&](const Pending& p) {
      const bool done = add_if_turn(p.stage, p.microbatch, p.step, p.gradients);
      moved = moved || done;
      return done;
    });
  }
  return pending_.empty();
}

void SharedReplicaState::settle(int64_t step, std::chrono::duration<double> timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  flush_own(step, timeout);
  wait_owned(step, std::max(std::chrono::duration<double>(0),
                            std::chrono::duration<double>(deadline - std::chrono::steady_clock::now())));
}

void SharedReplicaState::flush_own(int64_t step, std::chrono::duration<double> timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  PollBackoff backoff;
  // Later steps' additions may have to wait for the owners to take this step's sums.
  const auto done = [&] {
    try_flush();
    return std::none_of(pending_.begin(), pending_.end(), [&](const Pending& p) { return p.step <= step; });
  };
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) {
      const auto& p = pending_.front();
      throw TimeoutError(
          replica_->rank(), -1,
          "stateless workers: this rank's gradients of backward stage " + std::to_string(p.stage) +
              " microbatch " + std::to_string(p.microbatch) + " of step " + std::to_string(p.step) +
              " never got their turn (the stage's ticket reads " + std::to_string(ticket(p.stage)) +
              ") after " + std::to_string(timeout.count()) + " s");
    }
    backoff.pause();
  }
}

void SharedReplicaState::wait_owned(int64_t step, std::chrono::duration<double> timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  PollBackoff backoff;
  const auto all = turn(step, microbatches_);
  const auto missing = [&]() -> int {
    for (int k = replica_->rank(); k < static_cast<int>(stages_.size()); k += replica_->size()) {
      if (ticket(k) != all) return k;
    }
    return -1;
  };
  for (int k = missing(); k >= 0; k = missing()) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw TimeoutError(
          replica_->rank(), -1,
          "stateless workers: backward stage " + std::to_string(k) + ", owned here, has the gradients of " +
              std::to_string(static_cast<int64_t>(ticket(k)) - static_cast<int64_t>(turn(step, 0))) + " of " +
              std::to_string(microbatches_) + " microbatches of step " + std::to_string(step) + " after " +
              std::to_string(timeout.count()) + " s");
    }
    backoff.pause();
  }
}

void SharedReplicaState::finish_step(int64_t step) {
  grads_.narrow(0, owned_.offset, owned_.count).zero_();
  for (int k = replica_->rank(); k < static_cast<int>(stages_.size()); k += replica_->size()) {
    std::atomic_ref<uint32_t>(tickets_[static_cast<size_t>(k) * kTicketStride])
        .store(turn(step + 1, 0), std::memory_order_release);
  }
  if (versions_ == 1) replica_->native_barrier();
}

void SharedReplicaState::mark_updated(int64_t step) {
  for (int k = replica_->rank(); k < static_cast<int>(stages_.size()); k += replica_->size()) {
    std::atomic_ref<uint32_t>(updated_[static_cast<size_t>(k) * kTicketStride])
        .store(static_cast<uint32_t>(step + 1), std::memory_order_release);
  }
}

void SharedReplicaState::wait_updated(int stage, int64_t step, std::chrono::duration<double> timeout) {
  if (step < 2) return;
  std::atomic_ref<uint32_t> updated(updated_[static_cast<size_t>(stage) * kTicketStride]);
  const auto want = static_cast<uint32_t>(step - 1);  // the update of step - 2 is in place
  if (updated.load(std::memory_order_acquire) >= want) return;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  PollBackoff backoff;
  while (updated.load(std::memory_order_acquire) < want) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw TimeoutError(replica_->rank(), -1,
                         "stateless workers: the owner of backward stage " + std::to_string(stage) +
                             " never put the weights of step " + std::to_string(step) + " in place after " +
                             std::to_string(timeout.count()) + " s");
    }
    try_flush();
    backoff.pause();
  }
}

}  // namespace rondo

#include "pipeline/exec/shared_replica_state.h"

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
                                       std::vector<int64_t> boundary_shape)
    : replica_(std::move(replica)), microbatches_(microbatches), boundary_shape_(std::move(boundary_shape)) {
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
  const size_t ticket_bytes =
      align_up(static_cast<size_t>(stages) * kTicketStride * sizeof(uint32_t)) +
      align_up(static_cast<size_t>(stages) * static_cast<size_t>(microbatches) * sizeof(uint32_t));
  const size_t flat_bytes = align_up(static_cast<size_t>(elements_) * sizeof(float));
  const size_t boundary_bytes = static_cast<size_t>(stages) * static_cast<size_t>(microbatches) *
                                static_cast<size_t>(boundary_elements_) * sizeof(float);
  memory_ = NodeSharedMemory::create(*replica_, ticket_bytes + 4 * flat_bytes + boundary_bytes,
                                     "the stateless workers' weights, gradients and activations");
  auto* base = static_cast<char*>(memory_->data());
  tickets_ = reinterpret_cast<uint32_t*>(base);
  written_ = tickets_ + static_cast<size_t>(stages) * kTicketStride;
  const auto floats = torch::TensorOptions().dtype(torch::kFloat32);
  params_ = torch::from_blob(base + ticket_bytes, {elements_}, floats);
  grads_ = torch::from_blob(base + ticket_bytes + flat_bytes, {elements_}, floats);
  moments_ = torch::from_blob(base + ticket_bytes + 2 * flat_bytes, {2, elements_},
                              {static_cast<int64_t>(flat_bytes / sizeof(float)), 1}, floats);
  boundaries_ = torch::from_blob(base + ticket_bytes + 4 * flat_bytes,
                                 {static_cast<int64_t>(stages) * microbatches * boundary_elements_}, floats);
}

torch::Tensor SharedReplicaState::boundary(int stage, int microbatch) const {
  return boundaries_
      .narrow(0, (static_cast<int64_t>(stage) * microbatches_ + microbatch) * boundary_elements_,
              boundary_elements_)
      .view(boundary_shape_);
}

void SharedReplicaState::mark_boundary(int stage, int microbatch) {
  std::atomic_ref<uint32_t>(written_[static_cast<size_t>(stage * microbatches_ + microbatch)])
      .store(step_, std::memory_order_release);
}

void SharedReplicaState::wait_boundary(int stage, int microbatch,
                                       std::chrono::duration<double> timeout) const {
  std::atomic_ref<uint32_t> written(written_[static_cast<size_t>(stage * microbatches_ + microbatch)]);
  if (written.load(std::memory_order_acquire) == step_) return;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  PollBackoff backoff;
  while (written.load(std::memory_order_acquire) != step_) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw TimeoutError(replica_->rank(), -1,
                         "stateless workers: the forward never left the input of backward stage " +
                             std::to_string(stage) + " microbatch " + std::to_string(microbatch) + " after " +
                             std::to_string(timeout.count()) + " s");
    }
    backoff.pause();
  }
}

uint32_t SharedReplicaState::ticket(int stage) const {
  return std::atomic_ref<uint32_t>(tickets_[static_cast<size_t>(stage) * kTicketStride])
      .load(std::memory_order_acquire);
}

bool SharedReplicaState::add_if_turn(int stage, int microbatch, const torch::Tensor& gradients) {
  if (ticket(stage) != static_cast<uint32_t>(microbatch)) return false;
  const auto r = stages_[static_cast<size_t>(stage)];
  grads_.narrow(0, r.offset, r.count).add_(gradients);
  std::atomic_ref<uint32_t>(tickets_[static_cast<size_t>(stage) * kTicketStride])
      .store(static_cast<uint32_t>(microbatch) + 1, std::memory_order_release);
  return true;
}

void SharedReplicaState::accumulate(int stage, int microbatch, const torch::Tensor& local) {
  torch::NoGradGuard no_grad;
  if (pending_.empty() && add_if_turn(stage, microbatch, local)) {
    local.zero_();
    return;
  }
  pending_.push_back({stage, microbatch, local.clone()});
  local.zero_();
  try_flush();
}

bool SharedReplicaState::try_flush() {
  torch::NoGradGuard no_grad;
  // One addition may open the turn of another queued one: retry until nothing moves.
  for (bool moved = true; moved && !pending_.empty();) {
    moved = false;
    std::erase_if(pending_, [&](const Pending& p) {
      const bool done = add_if_turn(p.stage, p.microbatch, p.gradients);
      moved = moved || done;
      return done;
    });
  }
  return pending_.empty();
}

void SharedReplicaState::settle(std::chrono::duration<double> timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  PollBackoff backoff;
  const auto complete = [&] {
    if (!try_flush()) return false;
    for (int k = replica_->rank(); k < static_cast<int>(stages_.size()); k += replica_->size()) {
      if (ticket(k) != static_cast<uint32_t>(microbatches_)) return false;
    }
    return true;
  };
  while (!complete()) {
    if (std::chrono::steady_clock::now() > deadline) {
      std::string what = "stateless workers: ";
      if (!pending_.empty()) {
        const auto& p = pending_.front();
        what += "this rank's gradients of backward stage " + std::to_string(p.stage) + " microbatch " +
                std::to_string(p.microbatch) + " never got their turn (the stage's ticket reads " +
                std::to_string(ticket(p.stage)) + ")";
      } else {
        for (int k = replica_->rank(); k < static_cast<int>(stages_.size()); k += replica_->size()) {
          if (ticket(k) == static_cast<uint32_t>(microbatches_)) continue;
          what += "backward stage " + std::to_string(k) + ", owned here, has the gradients of " +
                  std::to_string(ticket(k)) + " of " + std::to_string(microbatches_) + " microbatches";
          break;
        }
      }
      throw TimeoutError(replica_->rank(), -1, what + " after " + std::to_string(timeout.count()) + " s");
    }
    backoff.pause();
  }
}

void SharedReplicaState::finish_step() {
  grads_.narrow(0, owned_.offset, owned_.count).zero_();
  for (int k = replica_->rank(); k < static_cast<int>(stages_.size()); k += replica_->size()) {
    std::atomic_ref<uint32_t>(tickets_[static_cast<size_t>(k) * kTicketStride])
        .store(0, std::memory_order_release);
  }
  ++step_;
  replica_->native_barrier();
}

}  // namespace rondo

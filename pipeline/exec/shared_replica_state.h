// SharedReplicaState: what RoundPipe's stateless workers of one pipeline replica share in node
// memory (comms/node_shared_memory.h), so that any worker runs any stage's task in place: every
// parameter, its gradient summed over the step's microbatches and its optimizer state, a gradient
// ticket per backward
// stage, and the boundary activations each forward leaves for a backward stage to recompute from.
//
// Backward stage k belongs to pipeline rank k mod p, its owner, which reduces its gradients over
// the data-parallel replicas and updates its parameters. The flat order puts each owner's stages
// side by side (owner 0's stages in order, then owner 1's, ...), so an owner's share is one range.
//
// Gradients accumulate race-free and in a fixed order: microbatch m of backward stage k adds its
// gradients when the stage's ticket reads m, then advances it -- microbatch order, as one process
// accumulates, whichever worker ran which. An addition whose turn has not come is queued and
// retried between actions; blocking on it could deadlock, as the turn's holder may be waiting for
// this worker's next message.
//
// Steps are numbered from 0 by the caller (every worker alike). Each microbatch of step s adds in
// turn: the ticket reads s (m + 1) + microbatch; the owner's finish_step(s) takes it to
// (s + 1)(m + 1), so no addition of step s + 1 lands before the owner has taken step s's sums.
//
// Asynchronous pipelines (versions = 2, PipeDream-2BW's one-step delay): step s computes on weight
// version s mod 2 and leaves its boundaries in slot s mod 2, so a step's forwards may run while
// the previous step's backwards still read theirs. The owners update their stages off the critical
// path: mark_updated(s) says the weights step s + 2 computes on are in place, which
// wait_updated(k, s + 2) waits for. No barrier ends a step.
//
// Call order per step s: mark_boundary() after writing a boundary, wait_boundary() before reading
// one; accumulate()/try_flush() during the backward; settle(s) before the gradients are read;
// finish_step(s) after the owner has read them (synchronous: after its optimizer step; it then
// ends with a barrier over the replica, so nobody starts the next step's forwards on half-updated
// weights).
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "comms/communicator.h"
#include "comms/node_shared_memory.h"

namespace rondo {

class SharedReplicaState {
 public:
  struct Range {
    int64_t offset = 0;
    int64_t count = 0;
  };

  // Collective over `replica` (its ranks in pipeline order, on one node). `stage_elements[k]`: the
  // parameter count of backward stage k; `boundary_shape`: one microbatch's activations at a
  // stage boundary. The block starts zeroed.
  SharedReplicaState(std::unique_ptr<Communicator> replica, const std::vector<int64_t>& stage_elements,
                     int microbatches, std::vector<int64_t> boundary_shape, int versions = 1);

  int owner(int stage) const { return stage % replica_->size(); }
  bool owns(int stage) const { return owner(stage) == replica_->rank(); }
  int stage_count() const { return static_cast<int>(stages_.size()); }
  Range stage(int stage) const { return stages_[static_cast<size_t>(stage)]; }
  Range owned() const { return owned_; }
  int64_t elements() const { return elements_; }
  Communicator& replica() const { return *replica_; }

  int versions() const { return versions_; }
  torch::Tensor parameters(int version = 0) const {
    return params_.select(0, version);
  }                                                   // [elements], float32
  torch::Tensor gradients() const { return grads_; }  // [elements], float32
  // The owners' optimizer state (AdamW's two moments), in host memory as RoundPipe keeps it.
  torch::Tensor optimizer_state() const { return moments_; }  // [2, elements], float32, zeroed
  // Where the forward of step `step` leaves backward stage `stage`'s input for microbatch `microbatch`.
  torch::Tensor boundary(int stage, int microbatch, int64_t step) const;
  // The forward has written boundary(stage, microbatch, step).
  void mark_boundary(int stage, int microbatch, int64_t step);
  // Waits until it has (a backward recomputes from it before its gradient, which would vouch for
  // it, arrives); throws TimeoutError after `timeout`.
  void wait_boundary(int stage, int microbatch, int64_t step, std::chrono::duration<double> timeout);

  // Adds `local` (this worker's gradients of `stage`'s range from microbatch `microbatch` of step
  // `step`) into the shared gradients when its turn has come, else queues a copy; zeroes `local`.
  void accumulate(int stage, int microbatch, int64_t step, const torch::Tensor& local);
  // Retries the queued additions; true when none is left.
  bool try_flush();
  // Waits until this worker's queued additions are done and every stage it owns has all the
  // microbatches of step `step`; throws TimeoutError naming the stage and its ticket after `timeout`.
  void settle(int64_t step, std::chrono::duration<double> timeout);
  // settle() in two halves, for an owner that consumes its stages on another thread: the calling
  // worker's own additions of steps up to `step` (the thread that accumulates), and the owned
  // stages' completeness (any thread; reads only the tickets).
  void flush_own(int64_t step, std::chrono::duration<double> timeout);
  void wait_owned(int64_t step, std::chrono::duration<double> timeout) const;
  // The owner's share of step `step` is consumed: zero its gradients, open the next step's turns,
  // then (synchronous) wait for the replica.
  void finish_step(int64_t step);
  // Asynchronous: the owner's stages hold the weights step `step` + 2 computes on.
  void mark_updated(int64_t step);
  // Waits until backward stage `stage`'s weights for step `step` are in place (steps 0 and 1
  // compute on the initial weights); throws TimeoutError after `timeout`. Both waits retry the
  // worker's queued additions meanwhile: an owner's update may be waiting for them.
  void wait_updated(int stage, int64_t step, std::chrono::duration<double> timeout);

 private:
  struct Pending {
    int stage, microbatch;
    int64_t step;
    torch::Tensor gradients;
  };
  uint32_t ticket(int stage) const;
  uint32_t turn(int64_t step, int microbatch) const {
    return static_cast<uint32_t>(step * (microbatches_ + 1) + microbatch);
  }
  bool add_if_turn(int stage, int microbatch, int64_t step, const torch::Tensor& gradients);
  size_t slot(int stage, int microbatch, int64_t step) const {
    return static_cast<size_t>(
        (step % versions_ * static_cast<int64_t>(stages_.size()) + stage) * microbatches_ + microbatch);
  }

  std::unique_ptr<Communicator> replica_;
  int microbatches_;
  int versions_;
  std::vector<int64_t> boundary_shape_;
  int64_t boundary_elements_;
  std::vector<Range> stages_;
  Range owned_;
  int64_t elements_ = 0;
  std::unique_ptr<NodeSharedMemory> memory_;
  uint32_t* tickets_ = nullptr;  // one per stage, a cache line apart
  uint32_t* updated_ = nullptr;  // asynchronous, per stage: 1 + the last step whose update is in place
  uint32_t* written_ = nullptr;  // per (slot, stage, microbatch): 1 + the last step that wrote its boundary
  torch::Tensor params_, grads_, moments_, boundaries_;
  std::vector<Pending> pending_;
};

}  // namespace rondo

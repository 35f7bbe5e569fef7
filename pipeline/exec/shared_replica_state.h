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
// Call order per step: mark_boundary() after writing a boundary, wait_boundary() before reading
// one; accumulate()/try_flush() during the backward; settle() before the
// gradients are read; finish_step() after the owner's optimizer step, which ends with a barrier
// over the replica (nobody starts the next step's forwards on half-updated weights).
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
                     int microbatches, std::vector<int64_t> boundary_shape);

  int owner(int stage) const { return stage % replica_->size(); }
  bool owns(int stage) const { return owner(stage) == replica_->rank(); }
  int stage_count() const { return static_cast<int>(stages_.size()); }
  Range stage(int stage) const { return stages_[static_cast<size_t>(stage)]; }
  Range owned() const { return owned_; }
  int64_t elements() const { return elements_; }
  Communicator& replica() const { return *replica_; }

  torch::Tensor parameters() const { return params_; }  // [elements], float32
  torch::Tensor gradients() const { return grads_; }    // [elements], float32
  // The owners' optimizer state (AdamW's two moments), in host memory as RoundPipe keeps it.
  torch::Tensor optimizer_state() const { return moments_; }  // [2, elements], float32, zeroed
  // Where the forward leaves backward stage `stage`'s input for microbatch `microbatch`.
  torch::Tensor boundary(int stage, int microbatch) const;
  // The forward has written boundary(stage, microbatch) this step.
  void mark_boundary(int stage, int microbatch);
  // Waits until it has (a backward recomputes from it before its gradient, which would vouch for
  // it, arrives); throws TimeoutError after `timeout`.
  void wait_boundary(int stage, int microbatch, std::chrono::duration<double> timeout) const;

  // Adds `local` (this worker's gradients of `stage`'s range from microbatch `microbatch`) into
  // the shared gradients when its turn has come, else queues a copy; zeroes `local` either way.
  void accumulate(int stage, int microbatch, const torch::Tensor& local);
  // Retries the queued additions; true when none is left.
  bool try_flush();
  // Waits until this worker's queued additions are done and every stage it owns has all its
  // microbatches; throws TimeoutError naming the stage and its ticket after `timeout`.
  void settle(std::chrono::duration<double> timeout);
  // The owner's share is consumed: zero its gradients and tickets, then wait for the replica.
  void finish_step();

 private:
  struct Pending {
    int stage, microbatch;
    torch::Tensor gradients;
  };
  uint32_t ticket(int stage) const;
  bool add_if_turn(int stage, int microbatch, const torch::Tensor& gradients);

  std::unique_ptr<Communicator> replica_;
  int microbatches_;
  std::vector<int64_t> boundary_shape_;
  int64_t boundary_elements_;
  std::vector<Range> stages_;
  Range owned_;
  int64_t elements_ = 0;
  std::unique_ptr<NodeSharedMemory> memory_;
  uint32_t* tickets_ = nullptr;  // one per stage, a cache line apart
  uint32_t* written_ = nullptr;  // per (stage, microbatch): the last step that wrote its boundary
  uint32_t step_ = 1;            // this step's number (finish_step() advances it)
  torch::Tensor params_, grads_, moments_, boundaries_;
  std::vector<Pending> pending_;
};

}  // namespace rondo

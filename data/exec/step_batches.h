// StepBatches: what the microbatches of a step read, as tensors on the rank's device -- token rows,
// the documents each row holds (data.pack) and the targets that count. The sample windows
// (data/sample_windows.h) decide the tokens; this only turns them into tensors, document ids and
// masks cached for the step.
//
// Microbatches are the plan's, of micro_batch_size rows: ids from num_microbatches on are the
// next step's (an asynchronous stream runs ahead).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <utility>

#include "data/sample_windows.h"
#include "proto/plan.pb.h"

namespace rondo {

class StepBatches {
 public:
  struct Packing {
    torch::Tensor documents;  // [rows, seq]: each token's document, from 0 at the row's start
    torch::Tensor crossing;   // [rows, seq]: true where the target does not count
  };

  // `plan`, `me` and `windows` must outlive this.
  StepBatches(const plan::Plan& plan, const plan::RankPlan& me, const SampleWindows& windows,
              torch::Device device);

  // The step being executed (1-based); the cache of the last one's is dropped.
  void set_step(int64_t step);
  int64_t step() const { return step_; }

  // The 0-based step microbatch `microbatch` belongs to, and its number there.
  std::pair<int64_t, int> step_of(int microbatch) const;

  // Token ids [rows, seq_length + 1] of the microbatch: each row's tokens and the next one (the
  // last target).
  torch::Tensor tokens(int microbatch) const;

  // data.pack: its document ids and the targets that cross into the next document; data.pad: the
  // targets outside each row's document.
  const Packing& packing(int microbatch);
  // The documents when data.pack, else undefined (each row one sequence).
  torch::Tensor documents(int microbatch);
  // targets [rows, seq] with those that do not count set to -100.
  torch::Tensor counted_targets(int microbatch, const torch::Tensor& targets);
  // How many targets of this step's microbatches count (this rank's).
  double step_targets();

 private:
  const plan::Plan& plan_;
  const plan::RankPlan& me_;
  const SampleWindows& windows_;
  torch::Device device_;
  int64_t step_ = 0;
  std::map<int, Packing> packings_;  // this step's
};

}  // namespace rondo

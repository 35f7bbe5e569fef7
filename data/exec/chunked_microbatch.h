// ChunkedMicrobatch: rows of tokens trained in chunks (ChunkFlow's state-aware chunk scheduling),
// so that peak activation memory depends on the chunk size, not on the longest sequence. The rows
// are a rank's whole share of a step's global batch (all its microbatches; ChunkFlow plans over the
// global batch) or one microbatch's.
//
// The rows are planned into chunks together (data/exec/chunked_rows.h). The plan's groups (a
// standalone chunk; a long sequence's chunks) are dealt in order into `parts` contiguous shares of
// about equal cost; forward(part) trains share `part` by ChunkFlow's state-aware schedule (Yuan et
// al. 2025, Algorithm 1):
//   a standalone chunk: its forward, then at once its backward -- never recomputed;
//   a long sequence of N chunks: the forwards in order, each attending to the keys and values of
//     the sequence's earlier chunks (kept per layer as leaf tensors); only its last K =
//     `chunks_in_memory` chunks keep their activations. Then the backwards in reverse: each of
//     the first N - K is recomputed from its inputs and the earlier chunks' keys and values, and
//     every chunk is differentiated with the gradients its later chunks left on its keys and
//     values (accumulated in the leaves).
// So at most K chunks' activations (and one sequence's keys and values) are alive at any time, and
// only N - K chunks of each long sequence run twice. Every parameter's gradient is the unchunked
// one's up to float summation order.
//
// The backward runs inside forward(), with the gradient the caller will give the returned loss
// (ChunkingOptions::loss_grad: the executor's 1 / (microbatches x dp)); the loss's own backward
// only checks that it was that. The loss is the share's next-token cross-entropy, each target's
// weighted by its row's weight (targets of -100 are not counted): with one part and the default
// weights (1 / the counted targets) the mean, like the unchunked model->loss on the same rows;
// with a microbatch's rows weighted 1 / its counted targets, the parts' losses sum to the sum of
// the microbatches' means. Without grad mode forward() runs the forwards only.
#pragma once

#include <torch/torch.h>

#include <memory>

#include "data/chunk_plan.h"
#include "data/exec/chunk_model.h"
#include "data/exec/chunked_rows.h"

namespace rondo {

struct ChunkingOptions {
  int64_t chunk_size = 0;
  ChunkBalance balance = ChunkBalance::kTokens;
  int chunks_in_memory = 1;  // K >= 1
  // d(what the caller differentiates) / d(the returned mean loss).
  double loss_grad = 1.0;
};

class ChunkedMicrobatch {
 public:
  // `stage` must hold the whole model (embedding and LM head). tokens and targets [rows, seq]
  // (targets -100 where there is none); `documents` [rows, seq] (a token's document, or
  // undefined: each row is one sequence); `row_weights` [rows] (each of a row's targets' weight
  // in the loss; undefined: 1 / all the rows' counted targets).
  ChunkedMicrobatch(std::shared_ptr<ChunkModel> model, int stage, const torch::Tensor& tokens,
                    const torch::Tensor& targets, const torch::Tensor& documents,
                    const ChunkingOptions& options, const torch::Tensor& row_weights = {});
  ~ChunkedMicrobatch();

  // Runs share `part` of `parts`' chunks forward and (in grad mode) backward; returns its loss,
  // whose backward must bring options.loss_grad. Each share once per pass (a forward without grad
  // mode and one with, under full recomputation).
  torch::Tensor forward(int part = 0, int parts = 1);

  const ChunkPlan& plan() const;
  const ChunkingStats& stats() const;

  // True on this thread while a chunk's backward runs: each parameter's gradient gets more
  // contributions after it, so gradient hooks must not take it as final (overlapped gradient
  // reduction marks the stage's gradients after the executor's backward instead).
  static bool partial_gradients();

  struct State;  // shared with the loss's backward node (chunked_microbatch.cpp)

 private:
  std::shared_ptr<State> state_;
};

}  // namespace rondo

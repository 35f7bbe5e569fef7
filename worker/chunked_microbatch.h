// ChunkedMicrobatch: one microbatch trained in chunks (ChunkFlow's state-aware chunk scheduling),
// so that peak activation memory depends on the chunk size, not on the longest sequence.
//
// The microbatch's sequences -- each row's runs of one document (data.pack), or whole rows --
// go through the chunk planner (data/chunk_plan.h): short ones packed into standalone chunks
// (attention confined to each), long ones split into dependent chunks. forward() runs every chunk
// in order; a dependent chunk attends to the keys and values of its sequence's earlier chunks,
// kept per layer as leaf tensors. Only the last `chunks_in_memory` (K) chunks keep their
// activations; the others run without a graph. The returned loss's backward runs the chunks in
// reverse order: each one not kept is recomputed from its inputs and its earlier chunks' keys and
// values, then differentiated with the gradients its later chunks left on its keys and values
// (accumulated in the leaves), so every parameter's gradient is the unchunked one's up to
// float summation order. At most K chunks' activations are alive at any time.
//
// The loss is the mean next-token cross-entropy over the microbatch's targets, like the
// unchunked model->loss on the same rows (targets of -100 are not counted).
#pragma once

#include <torch/torch.h>

#include <memory>

#include "data/chunk_plan.h"
#include "worker/staged_model.h"

namespace rondo {

struct ChunkingOptions {
  int64_t chunk_size = 0;
  ChunkBalance balance = ChunkBalance::kTokens;
  int chunks_in_memory = 1;  // K >= 1
};

// What the chunked microbatches of a step did, for the log and the benchmarks.
struct ChunkingStats {
  int64_t chunks = 0;
  int64_t dependent_chunks = 0;
  int64_t recomputed_chunks = 0;
  int64_t longest_sequence = 0;
};

class ChunkedMicrobatch {
 public:
  // `stage` must hold the whole model (embedding and LM head). tokens and targets [rows, seq]
  // (targets -100 where there is none); `documents` [rows, seq] (a token's document, or
  // undefined: each row is one sequence).
  ChunkedMicrobatch(StagedModel model, int stage, const torch::Tensor& tokens, const torch::Tensor& targets,
                    const torch::Tensor& documents, const ChunkingOptions& options);
  ~ChunkedMicrobatch();

  // Runs every chunk forward; returns the mean loss, whose backward runs the chunks' backward.
  // Call once.
  torch::Tensor forward();

  const ChunkPlan& plan() const;
  const ChunkingStats& stats() const;

  // True on this thread while a chunk's backward runs that is not its microbatch's last (every
  // chunk but the first): each parameter's gradient gets more contributions after it, so
  // gradient hooks must not take it as final (overlapped gradient reduction).
  static bool partial_gradients();

  struct State;  // shared with the loss's backward node (chunked_microbatch.cpp)

 private:
  std::shared_ptr<State> state_;
};

}  // namespace rondo

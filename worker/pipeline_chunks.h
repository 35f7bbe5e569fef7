// PipelineChunks: chunked long-context training with pipeline parallelism, the worker's side.
//
// The schedule's microbatches are then chunks (plan data.pipeline_chunk_lengths; StageExecutor):
// schedule microbatch m is chunk j = m % n of row-microbatch m / n, the tokens [begin_j, end_j)
// of each of its rows. On every stage this rank holds, a chunk's forward attends to the keys and
// values its row's earlier chunks left on that stage (kept per layer as leaves that require
// grad), and leaves its own for the later ones: no extra communication, the state never leaves
// the stage. The output it returns carries a backward node that, with the output's gradient,
// feeds into the chunk's graph the gradients its later chunks' backwards accumulated on its keys
// and values -- the schedule runs a row's backwards in reverse, so they are complete by then.
// A recomputed chunk (its forward ran without a graph; the executor reruns it in its backward)
// rebuilds the same keys and values; its leaves, and their gradients, stay those of its first
// forward. A chunk's leaves are freed when its backward has run.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "worker/staged_model.h"

namespace rondo {

class PipelineChunks {
 public:
  // `lengths`: a row's chunk lengths, summing to the model's sequence length.
  PipelineChunks(StagedModel model, std::vector<int64_t> lengths);
  ~PipelineChunks();

  int chunks() const { return static_cast<int>(begins_.size()); }
  int64_t begin(int chunk) const { return begins_[static_cast<size_t>(chunk)]; }
  int64_t length(int chunk) const { return lengths_[static_cast<size_t>(chunk)]; }

  // Stage `stage`'s forward of schedule microbatch `microbatch`: token ids [rows, length] (stage
  // with the embedding) or hidden states [rows, length, hidden] in. `documents`: the row-
  // microbatch's document ids [rows, seq] (data.pack), or undefined (each row one sequence).
  torch::Tensor forward(int stage, int microbatch, const torch::Tensor& input,
                        const torch::Tensor& documents);

  // Drops every chunk's keys and values (end of a step; after a failure nothing is left behind).
  void clear();

  struct State;  // shared with the backward nodes (pipeline_chunks.cpp)

 private:
  std::shared_ptr<State> state_;
  std::vector<int64_t> begins_, lengths_;
};

}  // namespace rondo

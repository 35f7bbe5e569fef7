// PipelineChunks: chunked long-context training with pipeline parallelism, the worker's side of a
// pipeline stage.
//
// A step's rows are planned into chunks together (data/exec/chunked_rows.h: short sequences packed
// into standalone chunks, long ones split into dependent chunks) and the step runs its own
// schedule over them (pipeline/exec/step_schedule.h): schedule microbatch c is chunk c, one row of
// its own length. On every stage this rank holds, a dependent chunk's forward attends to the keys
// and values its sequence's earlier chunks left on that stage (kept per layer as leaves that
// require grad); a chunk with a later one leaves its own. No extra communication: the state never
// leaves the stage. The output it returns carries a backward node that, with the output's
// gradient, feeds into the chunk's graph the gradients its later chunks' backwards accumulated on
// its keys and values -- the schedule runs a sequence's backwards in reverse, so they are complete
// by then. A recomputed chunk (its forward ran without a graph; the executor reruns it in its
// backward) rebuilds the same keys and values; its leaves, and their gradients, stay those of its
// first forward. A chunk's leaves are freed when its backward has run.
#pragma once

#include <torch/torch.h>

#include <memory>

#include "data/exec/chunk_model.h"
#include "data/exec/chunked_rows.h"

namespace rondo {

class PipelineChunks {
 public:
  explicit PipelineChunks(std::shared_ptr<ChunkModel> model);
  ~PipelineChunks();

  // The step's chunks (nothing of the last step's is kept).
  void set_rows(std::shared_ptr<const ChunkedRows> rows);

  // Stage `stage`'s forward of chunk `chunk`: its token ids [1, tokens] (the stage with the
  // embedding) or hidden states [1, tokens, hidden] in.
  torch::Tensor forward(int stage, int chunk, const torch::Tensor& input);

  // Drops every chunk's keys and values and the step's chunks (end of a step; after a failure
  // nothing is left behind).
  void clear();

  struct State;  // shared with the backward nodes (pipeline_chunks.cpp)

 private:
  std::shared_ptr<State> state_;
};

}  // namespace rondo

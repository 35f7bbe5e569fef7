// ChunkedRows: rows of tokens planned into chunks, ChunkFlow's way -- the one chunk planning that
// chunked training runs, at one stage (ChunkedMicrobatch) and in a pipeline (PipelineChunks).
//
// The rows' sequences -- each row's runs of one document (data.pack), or whole rows -- go through
// the chunk planner (data/chunk_plan.h) together: short ones packed into standalone chunks
// (attention confined to each sequence), long ones split into dependent chunks, each attending to
// its sequence's earlier chunks' keys and values. The plan's groups are a standalone chunk alone
// or a long sequence's chunks in order. inputs() cuts a chunk's model inputs from the rows: one
// row of its tokens, their positions in their sequences, their targets with each one's weight,
// and the attention bias over the keys of its sequence's earlier chunks and its own.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "data/chunk_plan.h"
#include "parallelism/model_parameters.h"

namespace rondo {

// What a step's chunks did, for the log and the benchmarks.
struct ChunkingStats {
  int64_t chunks = 0;
  int64_t dependent_chunks = 0;
  int64_t recomputed_chunks = 0;
  int64_t longest_sequence = 0;
};

class ChunkedRows {
 public:
  // tokens and targets [rows, seq] (targets -100 where there is none); `documents` [rows, seq] (a
  // token's document, or undefined: each row is one sequence); `row_weights` [rows] (each of a
  // row's targets' weight; undefined: 1 / all the rows' counted targets); `dims`: the model the
  // chunk planner counts costs on.
  ChunkedRows(const torch::Tensor& tokens, const torch::Tensor& targets, const torch::Tensor& documents,
              const torch::Tensor& row_weights, int64_t chunk_size, ChunkBalance balance,
              const GptDims& dims);

  const ChunkPlan& plan() const { return plan_; }
  size_t chunks() const { return plan_.chunks.size(); }
  // The chunks in the plan's order, grouped: a standalone chunk alone, a long sequence's together.
  const std::vector<std::vector<size_t>>& groups() const { return groups_; }
  // The chunks of `chunk`'s sequence before it, oldest first (none for a standalone chunk).
  std::vector<size_t> earlier_chunks(size_t chunk) const;
  // Whether a later chunk of its sequence attends to `chunk`'s keys and values.
  bool has_later_chunk(size_t chunk) const;
  // chunks, dependent chunks and the longest sequence (nothing recomputed yet).
  ChunkingStats counts() const;

  struct Inputs {
    torch::Tensor ids, positions;  // [1, tokens], long
    torch::Tensor targets;         // [tokens], long, -100 where none counts
    torch::Tensor weights;         // [tokens], float: each target's weight in the loss
    torch::Tensor bias;            // [1, tokens, past + tokens]: 0 where a query attends, -inf elsewhere
    int64_t past = 0;              // keys of the sequence's earlier chunks
  };
  // `with_bias` false: all but the bias (which takes tokens x (past + tokens) to build).
  Inputs inputs(size_t chunk, torch::Device device, bool with_bias = true) const;

 private:
  struct Sequence {
    int64_t row = 0, start = 0, length = 0;  // tokens [start, start + length) of a row
  };
  torch::Tensor tokens_, targets_, row_weight_;  // on the CPU
  std::vector<Sequence> sequences_;
  ChunkPlan plan_;
  std::vector<int> previous_chunk_;  // the chunk before this one in its sequence, or -1
  std::vector<std::vector<size_t>> groups_;
  int64_t longest_ = 0, dependent_ = 0;
};

// The sum over a chunk's targets of each one's weight times its next-token cross-entropy (logits
// [1, tokens, vocab]; a target of -100 adds nothing).
torch::Tensor weighted_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                     const torch::Tensor& weights);

}  // namespace rondo

// Chunk planner (ChunkFlow-style, plain C++): reorganises a global batch's sequences of very
// different lengths into chunks of at most `chunk_size` tokens. Sequences longer than a chunk are
// split into dependent chunks (in order: each attends to the keys and values of its sequence's
// earlier chunks); shorter ones are packed together into standalone chunks (first-fit
// decreasing). Peak activation memory then depends on the chunk size, not the longest sequence.
//
// Boundaries (data.chunk_balance):
//   tokens  ChunkFlow's: a long sequence's chunks hold chunk_size tokens each (the last the rest).
//           Their costs are not equal: a later chunk's queries attend to more keys.
//   cost    rondo's: chunks hold at most chunk_size tokens and cost at most a budget (the shared
//           cost model, parallelism/model_flops.h): first what a first chunk of chunk_size tokens
//           costs, lowered while the most expensive chunk costs more than 1.2x the mean (packed
//           short sequences attend to little). A long sequence's pieces cost about the same, so
//           its later pieces take fewer tokens; short sequences are packed within the budget too.
//           Memory stays bounded by the chunk size; the price is more, smaller chunks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "parallelism/model_parameters.h"

namespace rondo {

enum class ChunkBalance { kTokens, kCost };
ChunkBalance chunk_balance_from_name(const std::string& name);  // "tokens" | "cost"; throws ConfigError

struct ChunkSegment {
  int sequence = 0;            // index in the batch
  int64_t begin = 0, end = 0;  // tokens [begin, end) of that sequence
};

struct Chunk {
  std::vector<ChunkSegment> segments;  // one (a piece of a long sequence) or several (packed)
  int64_t tokens() const;
  // A piece of a long sequence after its first: needs the earlier pieces' keys and values.
  bool dependent() const { return segments.size() == 1 && segments.front().begin > 0; }
};

struct ChunkPlan {
  std::vector<Chunk> chunks;  // each long sequence's chunks consecutive and in order
  std::vector<double> costs;  // forward FLOPs per chunk (segment_forward_flops)
  double max_cost() const;
  double mean_cost() const;
  int64_t max_tokens() const;
};

// `lengths` are the batch's sequence lengths (tokens); `dims` the model the cost is counted on.
ChunkPlan plan_chunks(const std::vector<int64_t>& lengths, int64_t chunk_size, ChunkBalance balance,
                      const GptDims& dims);

}  // namespace rondo

// HdpBatches: the global batches of an HDP run (parallel.hdp): each step data.tokens_per_step
// tokens of whole documents, each cut at model.seq_length (the longest context), drawn from the
// dataset's documents in a seeded order that reshuffles every pass (SplitMix64 Fisher-Yates:
// the same batches on every machine). A step takes documents while they fit; the one that does not
// opens the next step. The same batches run under every HDP policy and as a static mesh, so the
// policies train on the same tokens.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rondo {

// A sequence of a batch: its document (index into the lengths given) and its tokens.
struct HdpSequence {
  size_t document = 0;
  int64_t length = 0;
};

class HdpBatches {
 public:
  // Throws ConfigError naming data.tokens_per_step when it is below max_length, and data.path when
  // there are no documents.
  HdpBatches(std::vector<int64_t> document_lengths, int64_t tokens_per_step, int64_t max_length,
             uint64_t seed);

  // The next step's sequences, in the order drawn.
  std::vector<HdpSequence> next_sequences();
  // The same, their lengths only.
  std::vector<int64_t> next();

 private:
  void shuffle();

  std::vector<int64_t> lengths_;
  std::vector<size_t> order_;
  size_t at_ = 0;
  uint64_t pass_ = 0;
  int64_t tokens_per_step_, max_length_;
  uint64_t seed_;
};

}  // namespace rondo

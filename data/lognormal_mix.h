// A reproducible synthetic mix of document lengths (data.path: lognormal): lengths drawn from a
// lognormal distribution, as long-context corpora have (many short documents, a long tail), each
// document's tokens a window of the builtin text, so that there is something to learn.
// Counter-based draws (SplitMix64, Box-Muller): the same parameters give the same corpus on
// every machine and standard library.
#pragma once

#include <cstdint>
#include <vector>

namespace rondo {

struct LognormalMix {
  int64_t documents = 1000;
  double mu = 8.5;  // of ln(length): median length e^mu (8.5: about 4,900 tokens)
  double sigma = 1.5;
  int64_t max_length = 2000000;  // lengths are clamped to [1, max_length]
  uint64_t seed = 1;
};

// Document i's length; the sequence depends only on the mix. Throws ConfigError naming the
// data.lognormal_* key of an invalid parameter.
std::vector<int64_t> lognormal_lengths(const LognormalMix& mix);
// A start offset into a text of `size` bytes for document i (its window wraps around the end).
uint64_t lognormal_document_offset(const LognormalMix& mix, int64_t document, uint64_t size);

}  // namespace rondo

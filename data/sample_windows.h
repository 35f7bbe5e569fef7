// SampleWindows: what each sample of a step reads, and which of its targets count, as plain arrays
// (the worker only turns them into tensors). A sample is a window of seq_length + 1 tokens
// (inputs and shifted targets) drawn by the GlobalBatchSampler; with data.pad it is one whole
// document instead, from its start, padded by whatever follows (those targets do not count).
// data.pack confines attention to each document of a window: the document ids say where each
// starts, and a target in the next document does not count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "data/global_batch_sampler.h"
#include "data/token_corpus.h"

namespace rondo {

class SampleWindows {
 public:
  struct Options {
    uint64_t seed = 0;
    uint64_t seq_length = 0;
    uint64_t global_batch_size = 0;
    bool pack = false;  // data.pack
    bool pad = false;   // data.pad
  };
  // `corpus` must outlive this. Throws ConfigError naming data.pad when the corpus has no
  // document of two tokens or more to pad.
  SampleWindows(const TokenCorpus& corpus, const Options& options);

  // Where sample `sample` (its index in the global batch) of 0-based step `step` starts in the corpus.
  uint64_t offset(uint64_t step, uint64_t sample) const;
  // Tokens [begin, begin + count) of that window into `out`; throws ConfigError naming
  // model.vocab_size for a token outside [0, vocab).
  void tokens(uint64_t step, uint64_t sample, uint64_t begin, size_t count, int64_t vocab,
              int64_t* out) const;

  // Whether some targets do not count (data.pack or data.pad).
  bool masks_targets() const { return options_.pack || options_.pad; }
  // Per input position of the window (seq_length of them): its document, numbered from 0 at the
  // window's start, and 1 where its target does not count (another document's first token; with
  // data.pad, any token outside the sample's document).
  void documents(uint64_t step, uint64_t sample, int64_t* document, uint8_t* target_dropped) const;

  uint64_t consumed_samples(uint64_t steps_done) const { return sampler_.consumed_samples(steps_done); }

 private:
  // data.pad: the start of the sample's document.
  uint64_t pad_document_start(uint64_t step, uint64_t sample) const;

  const TokenCorpus& corpus_;
  Options options_;
  GlobalBatchSampler sampler_;
  std::vector<uint64_t> pad_documents_;  // data.pad: the start of each document of two tokens or more
};

}  // namespace rondo

// GlobalBatchSampler: which text window each sample of each global batch reads. The window of
// sample j of step t depends only on (seed, t * global_batch_size + j), never on the parallel
// layout, so dp=1 with accumulation and dp=2 see exactly the same samples. Resumable: the whole
// state is the number of consumed samples.
#pragma once

#include <cstdint>

namespace rondo {

class GlobalBatchSampler {
 public:
  // Windows are `seq_length + 1` tokens (inputs and shifted targets) from a corpus of
  // `corpus_size` bytes.
  GlobalBatchSampler(uint64_t seed, uint64_t corpus_size, uint64_t seq_length, uint64_t global_batch_size);

  // Start offset in the corpus of sample `index_in_batch` of 0-based step `step`.
  uint64_t sample_offset(uint64_t step, uint64_t index_in_batch) const;
  // The same draw over `count` items (data.pad: which document a sample is).
  uint64_t sample_index(uint64_t step, uint64_t index_in_batch, uint64_t count) const;

  uint64_t consumed_samples(uint64_t steps_done) const { return steps_done * global_batch_size_; }

 private:
  uint64_t seed_;
  uint64_t num_windows_;
  uint64_t global_batch_size_;
};

}  // namespace rondo

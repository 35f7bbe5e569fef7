#include "data/global_batch_sampler.h"

#include "common/errors.h"
#include "data/splitmix64.h"

namespace rondo {

GlobalBatchSampler::GlobalBatchSampler(uint64_t seed, uint64_t corpus_size, uint64_t seq_length,
                                       uint64_t global_batch_size)
    : seed_(seed), num_windows_(0), global_batch_size_(global_batch_size) {
  if (corpus_size < seq_length + 1) throw Error("corpus shorter than one sample");
  num_windows_ = corpus_size - seq_length;
}

uint64_t GlobalBatchSampler::sample_offset(uint64_t step, uint64_t index_in_batch) const {
  return sample_index(step, index_in_batch, num_windows_);
}

uint64_t GlobalBatchSampler::sample_index(uint64_t step, uint64_t index_in_batch, uint64_t count) const {
  const uint64_t global_index = step * global_batch_size_ + index_in_batch;
  return splitmix64(splitmix64(seed_) ^ global_index) % count;
}

}  // namespace rondo

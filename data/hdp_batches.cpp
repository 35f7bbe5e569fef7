#include "data/hdp_batches.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "common/errors.h"
#include "data/splitmix64.h"

namespace rondo {

HdpBatches::HdpBatches(std::vector<int64_t> document_lengths, int64_t tokens_per_step, int64_t max_length,
                       uint64_t seed)
    : lengths_(std::move(document_lengths)),
      tokens_per_step_(tokens_per_step),
      max_length_(max_length),
      seed_(seed) {
  if (lengths_.empty()) throw ConfigError("data.path", "HDP batches need documents; the dataset has none");
  if (max_length < 1) throw ConfigError("model.seq_length", "must be >= 1");
  if (tokens_per_step < max_length)
    throw ConfigError("data.tokens_per_step",
                      std::to_string(tokens_per_step) + " is below model.seq_length (" +
                          std::to_string(max_length) + "): a step must hold the longest sequence");
  order_.resize(lengths_.size());
  shuffle();
}

void HdpBatches::shuffle() {
  std::iota(order_.begin(), order_.end(), size_t{0});
  for (size_t i = order_.size(); i > 1; --i) {
    const uint64_t draw = splitmix64(seed_ ^ splitmix64(pass_ * 0x9E3779B97F4A7C15ull + i));
    std::swap(order_[i - 1], order_[draw % i]);
  }
  at_ = 0;
}

std::vector<HdpSequence> HdpBatches::next_sequences() {
  std::vector<HdpSequence> batch;
  int64_t tokens = 0;
  while (true) {
    if (at_ == order_.size()) {
      ++pass_;
      shuffle();
    }
    const size_t document = order_[at_];
    const int64_t len = std::min(std::max<int64_t>(lengths_[document], 1), max_length_);
    if (tokens + len > tokens_per_step_) break;
    batch.push_back({document, len});
    tokens += len;
    ++at_;
  }
  return batch;
}

std::vector<int64_t> HdpBatches::next() {
  std::vector<int64_t> lengths;
  for (const auto& s : next_sequences()) lengths.push_back(s.length);
  return lengths;
}

}  // namespace rondo

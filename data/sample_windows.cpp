#include "data/sample_windows.h"

#include <algorithm>

#include "common/errors.h"

namespace rondo {

SampleWindows::SampleWindows(const TokenCorpus& corpus, const Options& options)
    : corpus_(corpus),
      options_(options),
      sampler_(options.seed, corpus.size(), options.seq_length, options.global_batch_size) {
  if (!options.pad) return;
  for (uint64_t d = 0; d < corpus.num_documents(); ++d) {
    const uint64_t end = d + 1 < corpus.num_documents() ? corpus.document_start(d + 1) : corpus.size();
    if (end >= corpus.document_start(d) + 2) pad_documents_.push_back(corpus.document_start(d));
  }
  if (pad_documents_.empty()) {
    throw ConfigError("data.pad", corpus.source() + " has no document of two tokens or more to pad");
  }
}

uint64_t SampleWindows::pad_document_start(uint64_t step, uint64_t sample) const {
  return pad_documents_[sampler_.sample_index(step, sample, pad_documents_.size())];
}

uint64_t SampleWindows::offset(uint64_t step, uint64_t sample) const {
  if (options_.pad) {
    // The document's start, unless the corpus ends within a window of it.
    return std::min(pad_document_start(step, sample), corpus_.size() - (options_.seq_length + 1));
  }
  return sampler_.sample_offset(step, sample);
}

void SampleWindows::tokens(uint64_t step, uint64_t sample, uint64_t begin, size_t count, int64_t vocab,
                           int64_t* out) const {
  const uint64_t at = offset(step, sample) + begin;
  corpus_.read(at, count, out);
  for (size_t j = 0; j < count; ++j) {
    if (out[j] < 0 || out[j] >= vocab) {
      throw ConfigError("model.vocab_size", "token " + std::to_string(out[j]) + " at position " +
                                                std::to_string(at + j) + " of " + corpus_.source() +
                                                " is outside the vocabulary of " + std::to_string(vocab));
    }
  }
}

void SampleWindows::documents(uint64_t step, uint64_t sample, int64_t* document,
                              uint8_t* target_dropped) const {
  const size_t len = options_.seq_length + 1;
  std::vector<int64_t> ids(len);
  const uint64_t at = offset(step, sample);
  corpus_.documents(at, len, ids.data());
  // With data.pad only the sample's document counts: its id in the window is where it starts.
  const int64_t own = options_.pad ? ids[pad_document_start(step, sample) - at] : -1;
  for (size_t j = 0; j + 1 < len; ++j) {
    document[j] = ids[j];
    target_dropped[j] = ids[j + 1] != ids[j] || (options_.pad && ids[j] != own);
  }
}

}  // namespace rondo

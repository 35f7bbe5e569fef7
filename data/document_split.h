// data.split, as Megatron-LM reads it: "98,2" or "969,30,1" -- relative weights of the training,
// validation and test parts (missing parts weigh 0). The corpus's documents are cut into
// consecutive ranges in that proportion by Megatron's rule (each part round(weight x documents),
// the rounding's excess taken off the end), so a document is wholly in one part. Training reads
// only the first part, evaluation (training.eval_interval) only the second; the test part is
// held out from both. Plain C++, so the coordinator checks the key with the worker's code.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/token_corpus.h"

namespace rondo {

// Three weights, normalised to sum to 1 ("" reads as 1,0,0: everything trains). Throws ConfigError
// naming data.split for anything but one to three comma-separated non-negative numbers with a
// positive sum and a positive training weight.
std::vector<double> parse_document_split(const std::string& text);

// The [begin, end) documents of each part (three), for `documents` documents.
std::vector<std::pair<uint64_t, uint64_t>> split_documents(uint64_t documents,
                                                           const std::vector<double>& weights);

// `all`'s training and validation parts by `weights` (normalised, as parse_document_split
// returns them). Throws ConfigError naming data.split when the training part holds fewer than
// `min_tokens` tokens (one sample).
struct CorpusParts {
  TokenCorpus training, validation;
};
CorpusParts split_corpus(const TokenCorpus& all, const std::vector<double>& weights, uint64_t min_tokens);

}  // namespace rondo

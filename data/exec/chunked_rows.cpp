#include "data/exec/chunked_rows.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace rondo {

ChunkedRows::ChunkedRows(const torch::Tensor& tokens, const torch::Tensor& targets,
                         const torch::Tensor& documents, const torch::Tensor& row_weights, int64_t chunk_size,
                         ChunkBalance balance, const GptDims& dims)
    : tokens_(tokens.to(torch::kCPU).contiguous()), targets_(targets.to(torch::kCPU).contiguous()) {
  const int64_t rows = tokens.size(0), seq = tokens.size(1);
  const auto docs = documents.defined() ? documents.to(torch::kCPU).contiguous() : documents;
  // Each row's runs of equal document ids (or the whole row), in row order.
  for (int64_t r = 0; r < rows; ++r) {
    if (!docs.defined()) {
      sequences_.push_back({r, 0, seq});
      continue;
    }
    const auto ids = docs[r].contiguous();
    const auto* d = ids.data_ptr<int64_t>();
    int64_t start = 0;
    for (int64_t p = 1; p <= seq; ++p) {
      if (p == seq || d[p] != d[p - 1]) {
        sequences_.push_back({r, start, p - start});
        start = p;
      }
    }
  }
  std::vector<int64_t> lengths;
  for (const auto& sq : sequences_) {
    lengths.push_back(sq.length);
    longest_ = std::max(longest_, sq.length);
  }
  plan_ = plan_chunks(lengths, chunk_size, balance, dims);
  previous_chunk_.assign(plan_.chunks.size(), -1);
  std::vector<int> last_of_sequence(sequences_.size(), -1);
  for (size_t i = 0; i < plan_.chunks.size(); ++i) {
    const auto& chunk = plan_.chunks[i];
    if (chunk.dependent()) {
      const auto sq = static_cast<size_t>(chunk.segments.front().sequence);
      if (last_of_sequence[sq] < 0)
        throw std::logic_error("chunk plan: a dependent chunk before its sequence's first");
      previous_chunk_[i] = last_of_sequence[sq];
      ++dependent_;
      if (groups_.empty() || groups_.back().back() != static_cast<size_t>(previous_chunk_[i]))
        throw std::logic_error("chunk plan: a long sequence's chunks are not consecutive");
      groups_.back().push_back(i);
    } else {
      groups_.push_back({i});
    }
    for (const auto& seg : chunk.segments)
      last_of_sequence[static_cast<size_t>(seg.sequence)] = static_cast<int>(i);
  }
  if (row_weights.defined()) {
    if (row_weights.numel() != rows)
      throw std::invalid_argument("chunked rows: " + std::to_string(row_weights.numel()) +
                                  " row weights for " + std::to_string(rows) + " rows");
    row_weight_ = row_weights.to(torch::kCPU, torch::kFloat64).contiguous();
  } else {
    const auto counted = static_cast<double>(std::max<int64_t>(targets_.ne(-100).sum().item<int64_t>(), 1));
    row_weight_ = torch::full({rows}, 1.0 / counted, torch::kFloat64);
  }
}

std::vector<size_t> ChunkedRows::earlier_chunks(size_t chunk) const {
  std::vector<size_t> out;
  for (int c = previous_chunk_.at(chunk); c >= 0; c = previous_chunk_[static_cast<size_t>(c)])
    out.push_back(static_cast<size_t>(c));
  std::reverse(out.begin(), out.end());
  return out;
}

bool ChunkedRows::has_later_chunk(size_t chunk) const {
  const auto& c = plan_.chunks.at(chunk);
  if (c.segments.size() != 1) return false;
  const auto& seg = c.segments.front();
  return seg.end < sequences_[static_cast<size_t>(seg.sequence)].length;
}

ChunkingStats ChunkedRows::counts() const {
  return {static_cast<int64_t>(plan_.chunks.size()), dependent_, 0, longest_};
}

ChunkedRows::Inputs ChunkedRows::inputs(size_t index, torch::Device device, bool with_bias) const {
  const auto& chunk = plan_.chunks.at(index);
  std::vector<torch::Tensor> ids, labels, weights, positions, segment_of;
  Inputs out;
  const auto* w = row_weight_.data_ptr<double>();
  for (size_t s = 0; s < chunk.segments.size(); ++s) {
    const auto& seg = chunk.segments[s];
    const auto& sq = sequences_[static_cast<size_t>(seg.sequence)];
    ids.push_back(tokens_[sq.row].slice(0, sq.start + seg.begin, sq.start + seg.end));
    labels.push_back(targets_[sq.row].slice(0, sq.start + seg.begin, sq.start + seg.end));
    weights.push_back(torch::full({seg.end - seg.begin}, w[sq.row], torch::kFloat32));
    positions.push_back(torch::arange(seg.begin, seg.end, torch::kLong));
    segment_of.push_back(torch::full({seg.end - seg.begin}, static_cast<int64_t>(s), torch::kLong));
    if (chunk.dependent()) out.past = seg.begin;
  }
  const auto query_pos = torch::cat(positions);
  if (with_bias) {
    // Keys: the sequence's earlier tokens (segment 0), then the chunk's own.
    const auto query_seg = torch::cat(segment_of);
    const int64_t past = out.past;
    const auto key_pos = past > 0 ? torch::cat({torch::arange(past, torch::kLong), query_pos}) : query_pos;
    const auto key_seg = past > 0 ? torch::cat({torch::zeros({past}, torch::kLong), query_seg}) : query_seg;
    const auto allowed =
        query_seg.unsqueeze(1).eq(key_seg.unsqueeze(0)) & key_pos.unsqueeze(0).le(query_pos.unsqueeze(1));
    out.bias = torch::zeros(allowed.sizes(), torch::kFloat32)
                   .masked_fill_(allowed.logical_not(), -std::numeric_limits<float>::infinity())
                   .unsqueeze(0)
                   .to(device);
  }
  out.ids = torch::cat(ids).unsqueeze(0).to(device);
  out.positions = query_pos.unsqueeze(0).to(device);
  out.targets = torch::cat(labels).to(device);
  out.weights = torch::cat(weights).to(device);
  return out;
}

torch::Tensor weighted_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                     const torch::Tensor& weights) {
  return (torch::nn::functional::cross_entropy(
              logits.view({-1, logits.size(-1)}), targets,
              torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone).ignore_index(-100)) *
          weights)
      .sum();
}

}  // namespace rondo

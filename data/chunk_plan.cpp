#include "data/chunk_plan.h"

#include <algorithm>
#include <numeric>

#include "common/errors.h"
#include "parallelism/model_flops.h"

namespace rondo {

ChunkBalance chunk_balance_from_name(const std::string& name) {
  if (name == "tokens") return ChunkBalance::kTokens;
  if (name == "cost") return ChunkBalance::kCost;
  throw ConfigError("data.chunk_balance", "tokens or cost, got '" + name + "'");
}

int64_t Chunk::tokens() const {
  int64_t n = 0;
  for (const auto& s : segments) n += s.end - s.begin;
  return n;
}

double ChunkPlan::max_cost() const {
  return costs.empty() ? 0.0 : *std::max_element(costs.begin(), costs.end());
}

double ChunkPlan::mean_cost() const {
  return costs.empty() ? 0.0
                       : std::accumulate(costs.begin(), costs.end(), 0.0) / static_cast<double>(costs.size());
}

int64_t ChunkPlan::max_tokens() const {
  int64_t n = 0;
  for (const auto& c : chunks) n = std::max(n, c.tokens());
  return n;
}

namespace {

constexpr double kCostLimit = 1.2;   // the most expensive chunk against the mean
constexpr double kCostTarget = 1.1;  // where a budget that missed the limit is set next
constexpr int kBudgetRounds = 8;

double segment_cost(const GptDims& dims, const ChunkSegment& s) {
  return segment_forward_flops(dims, static_cast<double>(s.begin), static_cast<double>(s.end));
}

// The most tokens from `begin` on whose segment costs at most `budget` (at least one token, at
// most `limit`): the cost grows with the end, so a binary search.
int64_t tokens_within(const GptDims& dims, int64_t begin, int64_t limit, double budget) {
  int64_t lo = 1, hi = limit;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (segment_forward_flops(dims, static_cast<double>(begin), static_cast<double>(begin + mid)) <= budget) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// One plan; with kCost no chunk costs more than `budget`.
// Sequence `i` of `n` tokens in pieces of at most `chunk_size` tokens: as few as `budget` allows,
// then the lowest per-piece budget that still needs no more of them, so that the pieces cost
// about the same, the last one included.
void split_by_cost(int i, int64_t n, int64_t chunk_size, const GptDims& dims, double budget,
                   ChunkPlan& plan) {
  const auto pieces = [&](double b, std::vector<int64_t>* ends) {
    size_t count = 0;
    for (int64_t begin = 0; begin < n; ++count) {
      begin += tokens_within(dims, begin, std::min(chunk_size, n - begin), b);
      if (ends) ends->push_back(begin);
    }
    return count;
  };
  std::vector<int64_t> ends;
  const size_t k = pieces(budget, &ends);
  double total = 0;  // what the greedy pieces cost together: no budget below total / k keeps k
  for (size_t j = 0; j < ends.size(); ++j) {
    total += segment_forward_flops(dims, j == 0 ? 0.0 : static_cast<double>(ends[j - 1]),
                                   static_cast<double>(ends[j]));
  }
  double lo = total / static_cast<double>(k), hi = budget;
  for (int iter = 0; iter < 40 && hi - lo > 1e-6 * hi; ++iter) {
    const double mid = 0.5 * (lo + hi);
    (pieces(mid, nullptr) <= k ? hi : lo) = mid;
  }
  ends.clear();
  pieces(hi, &ends);
  int64_t begin = 0;
  for (int64_t end : ends) {
    plan.chunks.push_back({{{i, begin, end}}});
    begin = end;
  }
}

// First-fit decreasing: the short sequences `short_ones`, longest first, each into the first open
// chunk with room (tokens; and for `cost`, the budget).
void pack_first_fit(std::vector<int> short_ones, const std::vector<int64_t>& lengths, int64_t chunk_size,
                    ChunkBalance balance, const GptDims& dims, double budget, ChunkPlan& plan) {
  std::stable_sort(short_ones.begin(), short_ones.end(),
                   [&](int a, int b) { return lengths[a] > lengths[b]; });
  struct Bin {
    size_t chunk;
    int64_t tokens;
    double cost;
  };
  std::vector<Bin> open;
  for (int i : short_ones) {
    const ChunkSegment seg{i, 0, lengths[static_cast<size_t>(i)]};
    const double cost = segment_cost(dims, seg);
    auto fits = [&](const Bin& b) {
      return b.tokens + seg.end <= chunk_size &&
             (balance == ChunkBalance::kTokens || b.cost + cost <= budget);
    };
    auto it = std::find_if(open.begin(), open.end(), fits);
    if (it == open.end()) {
      plan.chunks.push_back({});
      open.push_back({plan.chunks.size() - 1, 0, 0.0});
      it = open.end() - 1;
    }
    plan.chunks[it->chunk].segments.push_back(seg);
    it->tokens += seg.end;
    it->cost += cost;
  }
}

ChunkPlan plan_within(const std::vector<int64_t>& lengths, int64_t chunk_size, ChunkBalance balance,
                      const GptDims& dims, double budget) {
  ChunkPlan plan;
  std::vector<int> short_ones;
  for (size_t i = 0; i < lengths.size(); ++i) {
    const int64_t n = lengths[i];
    if (n < 0) throw ConfigError("data", "sequence " + std::to_string(i) + " has a negative length");
    if (n == 0) continue;
    // Short: fits one chunk (and, by cost, the budget); packed with others below.
    if (n <= chunk_size && (balance == ChunkBalance::kTokens ||
                            segment_forward_flops(dims, 0, static_cast<double>(n)) <= budget)) {
      short_ones.push_back(static_cast<int>(i));
    } else if (balance == ChunkBalance::kTokens) {
      for (int64_t begin = 0; begin < n; begin += chunk_size) {
        plan.chunks.push_back({{{static_cast<int>(i), begin, std::min(n, begin + chunk_size)}}});
      }
    } else {
      split_by_cost(static_cast<int>(i), n, chunk_size, dims, budget, plan);
    }
  }
  pack_first_fit(std::move(short_ones), lengths, chunk_size, balance, dims, budget, plan);
  for (const auto& c : plan.chunks) {
    double cost = 0;
    for (const auto& s : c.segments) cost += segment_cost(dims, s);
    plan.costs.push_back(cost);
  }
  return plan;
}

}  // namespace

ChunkPlan plan_chunks(const std::vector<int64_t>& lengths, int64_t chunk_size, ChunkBalance balance,
                      const GptDims& dims) {
  if (chunk_size < 1) throw ConfigError("data.chunk_size", "must be >= 1");
  // Start from what a first chunk of chunk_size tokens costs. Chunks packed from short sequences
  // cost less (little attention), so where they pull the mean down, lower the budget towards
  // kCostTarget x the mean until the most expensive chunk is within kCostLimit of it.
  double budget = segment_forward_flops(dims, 0, static_cast<double>(chunk_size));
  ChunkPlan plan = plan_within(lengths, chunk_size, balance, dims, budget);
  for (int round = 0; balance == ChunkBalance::kCost && round < kBudgetRounds; ++round) {
    const double mean = plan.mean_cost();
    if (plan.chunks.empty() || plan.max_cost() <= kCostLimit * mean) break;
    budget = std::min(budget, kCostTarget * mean);
    plan = plan_within(lengths, chunk_size, balance, dims, budget);
  }
  return plan;
}

}  // namespace rondo

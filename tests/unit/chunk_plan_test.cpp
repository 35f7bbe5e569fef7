// The chunk planner: every token of every sequence lands in exactly one chunk, long sequences in
// order; no chunk exceeds the chunk size; cost-aware boundaries keep every chunk within the cost
// of a first full chunk and bring max/mean chunk cost under 1.2 where equal tokens do not.
#include "data/chunk_plan.h"

#include <gtest/gtest.h>

#include <map>

#include "common/errors.h"
#include "parallelism/model_flops.h"

namespace rondo {
namespace {

const GptDims kLlama8B{32, 4096, 14336, 128256, 4096};

// Each sequence's segments, sorted, tile [0, length) exactly; a split sequence's chunks are in order.
void expect_covers(const ChunkPlan& plan, const std::vector<int64_t>& lengths, int64_t chunk_size) {
  std::map<int, std::vector<std::pair<int64_t, int64_t>>> pieces;
  for (const auto& c : plan.chunks) {
    EXPECT_LE(c.tokens(), chunk_size);
    EXPECT_FALSE(c.segments.empty());
    for (const auto& s : c.segments) pieces[s.sequence].push_back({s.begin, s.end});
  }
  for (size_t i = 0; i < lengths.size(); ++i) {
    if (lengths[i] == 0) continue;
    const auto& p = pieces[static_cast<int>(i)];
    ASSERT_FALSE(p.empty()) << "sequence " << i << " is in no chunk";
    int64_t at = 0;
    for (const auto& [b, e] : p) {  // in chunk order: a split sequence's pieces come in order
      EXPECT_EQ(b, at) << "sequence " << i;
      EXPECT_GT(e, b);
      at = e;
    }
    EXPECT_EQ(at, lengths[i]) << "sequence " << i;
  }
  EXPECT_EQ(plan.costs.size(), plan.chunks.size());
}

TEST(ChunkPlan, EqualTokensSplitLongSequencesAndPackShortOnes) {
  const std::vector<int64_t> lengths = {10000, 300, 200, 4096, 50, 0};
  const auto plan = plan_chunks(lengths, 4096, ChunkBalance::kTokens, kLlama8B);
  expect_covers(plan, lengths, 4096);
  ASSERT_EQ(plan.chunks.size(), 5u);  // 3 pieces of the long one, the 4096 alone, 300+200+50
  EXPECT_FALSE(plan.chunks[0].dependent());
  EXPECT_TRUE(plan.chunks[1].dependent());
  EXPECT_TRUE(plan.chunks[2].dependent());
  EXPECT_EQ(plan.chunks[2].tokens(), 10000 - 2 * 4096);
  EXPECT_EQ(plan.chunks[3].tokens(), 4096);
  EXPECT_EQ(plan.chunks[4].segments.size(), 3u);
  // Equal tokens, unequal cost: the second piece attends to twice the keys of the first.
  EXPECT_GT(plan.costs[1], plan.costs[0]);
  EXPECT_DOUBLE_EQ(plan.costs[0], segment_forward_flops(kLlama8B, 0, 4096));
}

TEST(ChunkPlan, CostAwareBoundariesBoundEveryChunkByAFirstChunksCost) {
  // A long tail: one 64K sequence among short and medium ones.
  std::vector<int64_t> lengths = {65536, 9000, 3000, 2500, 1200, 800, 700, 400, 100, 4096};
  for (int i = 0; i < 20; ++i) lengths.push_back(64 + 97 * i);
  const int64_t c = 4096;
  const double budget = segment_forward_flops(kLlama8B, 0, static_cast<double>(c));
  const auto tokens = plan_chunks(lengths, c, ChunkBalance::kTokens, kLlama8B);
  const auto cost = plan_chunks(lengths, c, ChunkBalance::kCost, kLlama8B);
  expect_covers(tokens, lengths, c);
  expect_covers(cost, lengths, c);
  for (double x : cost.costs) EXPECT_LE(x, budget * (1 + 1e-12));
  const double ratio_tokens = tokens.max_cost() / tokens.mean_cost();
  const double ratio_cost = cost.max_cost() / cost.mean_cost();
  EXPECT_GT(ratio_tokens, 1.2) << "the equal-token plan should be unbalanced on this batch";
  EXPECT_LE(ratio_cost, 1.2);
  EXPECT_GT(cost.chunks.size(), tokens.chunks.size()) << "later pieces take fewer tokens";
}

TEST(ChunkPlan, RefusesABadChunkSize) {
  EXPECT_THROW(plan_chunks({10}, 0, ChunkBalance::kTokens, kLlama8B), ConfigError);
  EXPECT_THROW(chunk_balance_from_name("flops"), ConfigError);
  EXPECT_EQ(chunk_balance_from_name("cost"), ChunkBalance::kCost);
}

}  // namespace
}  // namespace rondo

// HDP planner (ByteScale-style hybrid data/context parallelism): every global batch is planned
// afresh. Each sequence gets a context-parallel group of ranks sized for it, and the groups are
// laid out on the ranks' timelines so they all finish together. Plain C++: lengths in, for each
// sequence its group and start, for each rank its ordered sub-batches out.
//
// Policies (parallel.hdp_policy):
// - static: one DP x CP mesh for the whole batch, CP the smallest degree dividing the ranks that
//   holds the longest sequence; sequences dealt to the data-parallel groups by tokens.
// - megatron: Megatron-LM's hybrid context parallelism: each sequence on the smallest power-of-two
//   degree that holds it, longest first, greedily onto the least-loaded aligned block of ranks.
// - rondo: degrees chosen for time (a sequence whose time would bound the step gets a larger
//   group, any size, while that shortens it), groups longest-first onto the ranks free earliest,
//   single-rank sequences into the idle gaps groups leave and onto the least busy ranks.
// The step is the last rank's finish; a rank is busy while its group computes or passes its ring.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "parallelism/context_parallel_cost.h"

namespace rondo {

enum class HdpPolicy { kStatic, kMegatron, kRondo };
// "static" | "megatron" | "rondo"; throws ConfigError naming parallel.hdp_policy.
HdpPolicy hdp_policy_from_name(const std::string& name);
const char* hdp_policy_name(HdpPolicy policy);
inline constexpr HdpPolicy kHdpPolicies[] = {HdpPolicy::kStatic, HdpPolicy::kMegatron, HdpPolicy::kRondo};

struct HdpOptions {
  int64_t ranks = 1;
  int64_t max_tokens_per_rank = 0;  // of one sequence a rank holds at once (parallel.max_tokens_per_rank)
};

// One sequence's place: the ranks of its group (ascending), when the group starts, its seconds.
struct HdpPlacement {
  int64_t tokens = 0;
  std::vector<int64_t> ranks;
  double start_s = 0, seconds = 0;
};

// What a rank runs at once: one sequence split over its group, or whole sequences packed on the
// rank alone up to max_tokens_per_rank.
struct HdpSubBatch {
  std::vector<int64_t> sequences;  // indices into the batch
  std::vector<int64_t> group;      // the ranks computing it together (this rank alone: size 1)
  int64_t tokens_per_rank = 0;
  double start_s = 0;
};

struct HdpPlan {
  HdpPolicy policy = HdpPolicy::kRondo;
  std::vector<HdpPlacement> placements;               // by sequence index
  std::vector<std::vector<HdpSubBatch>> sub_batches;  // by rank, in order
  std::vector<double> busy_s;                         // by rank
  double step_s = 0;

  double busy_max_over_mean() const;
  std::map<int64_t, int64_t> degree_histogram() const;  // degree -> sequences
};

// The smallest group that holds a sequence of `tokens`; throws ConfigError naming the length, the
// cap and parallel.max_tokens_per_rank when no group of the ranks can.
int64_t hdp_min_degree(int64_t tokens, const HdpOptions& options);
// The degree in [lowest, ranks] at which a sequence of `tokens` is done soonest (the smallest of
// equals), and the smallest from `lowest` that finishes it within `limit` seconds (-1: none).
int64_t hdp_fastest_degree(int64_t tokens, int64_t lowest, int64_t ranks, const ContextParallelCost& cost);
int64_t hdp_degree_within(int64_t tokens, int64_t lowest, int64_t ranks, double limit,
                          const ContextParallelCost& cost);
// No plan's step is shorter: the batch's least work over the ranks, or its longest sequence at its
// fastest degree, whichever is larger. With pipelines of `stages` stages (options.ranks counting
// pipelines; hdp_pipelines.h) the work spreads over all their ranks, while the longest sequence's
// forward and backward still pass every stage in turn.
double hdp_lower_bound(const std::vector<int64_t>& lengths, const HdpOptions& options,
                       const ContextParallelCost& cost, int64_t stages = 1);

HdpPlan plan_hdp(const std::vector<int64_t>& lengths, HdpPolicy policy, const HdpOptions& options,
                 const ContextParallelCost& cost);

}  // namespace rondo

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
  HdpOptions() = default;
  HdpOptions(int64_t ranks, int64_t max_tokens_per_rank)
      : ranks(ranks), max_tokens_per_rank(max_tokens_per_rank) {}
  int64_t ranks = 1;
  int64_t max_tokens_per_rank = 0;  // of one sequence a rank holds at once (parallel.max_tokens_per_rank)
  // Each rank's host (any numbers; empty: all on one host). A group on one host passes its ring
  // faster than one spanning hosts (ContextParallelCostSpec): the planners cost every group where
  // it lands, and rondo looks for its groups on one host first. Set with hdp_set_hosts.
  std::vector<int64_t> hosts;
  int64_t largest_host = 0;  // ranks on the most populous host (0: all of them)
};
// Sets options.hosts and largest_host; throws ConfigError naming topology.rank_hosts when there is
// not one host per rank.
void hdp_set_hosts(HdpOptions& options, std::vector<int64_t> hosts);
// The HDP ranks' hosts when each is a pipeline of several stages (hdp_pipelines.h): pipelines
// p and q share a host number when their stage-s ranks share a host at every stage s.
// `stage_hosts[p][s]`: the host of pipeline p's stage-s rank.
std::vector<int64_t> hdp_pipeline_hosts(const std::vector<std::vector<int64_t>>& stage_hosts);
bool hdp_spans_hosts(const std::vector<int64_t>& ranks, const HdpOptions& options);
// A sequence's seconds on the group `ranks`, its ring within a host or across.
double hdp_group_seconds(int64_t tokens, const std::vector<int64_t>& ranks, const HdpOptions& options,
                         const ContextParallelCost& cost);
// A sequence's seconds on `degree` ranks placed as well as the hosts allow (on one host when one
// holds that many).
double hdp_best_seconds(int64_t tokens, int64_t degree, const HdpOptions& options,
                        const ContextParallelCost& cost);

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
// equals), and the smallest from `lowest` that finishes it within `limit` seconds (-1: none), each
// degree placed as well as the hosts allow (hdp_best_seconds).
int64_t hdp_fastest_degree(int64_t tokens, int64_t lowest, const HdpOptions& options,
                           const ContextParallelCost& cost);
int64_t hdp_degree_within(int64_t tokens, int64_t lowest, const HdpOptions& options, double limit,
                          const ContextParallelCost& cost);
// The plan's groups and sub-batches kept, each rank running its sub-batches in the same order, every
// sequence timed on its group as `options`' hosts and `cost` have it: what a plan made for another
// fabric (or none) takes on this one.
HdpPlan hdp_retimed(const HdpPlan& plan, const HdpOptions& options, const ContextParallelCost& cost);
// No plan's step is shorter: the batch's least work over the ranks, or its longest sequence at its
// fastest degree, whichever is larger. With pipelines of `stages` stages (options.ranks counting
// pipelines; hdp_pipelines.h) the work spreads over all their ranks, while the longest sequence's
// forward and backward still pass every stage in turn.
double hdp_lower_bound(const std::vector<int64_t>& lengths, const HdpOptions& options,
                       const ContextParallelCost& cost, int64_t stages = 1);

HdpPlan plan_hdp(const std::vector<int64_t>& lengths, HdpPolicy policy, const HdpOptions& options,
                 const ContextParallelCost& cost);

}  // namespace rondo

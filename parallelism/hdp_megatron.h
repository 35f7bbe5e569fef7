// The HDP planner's `megatron` baseline (hdp_planner.h): Megatron-LM's hybrid context-parallel
// scheduler (megatron/core/pipeline_parallel/hybrid_cp_schedule.py, BalancedCPScheduler),
// re-implemented from its algorithm. Each sequence's degree is the smallest power of two that holds
// it (at most the ranks); its load on each member is L^2 / degree. The batch runs as microbatches,
// each ended by a barrier over all ranks. A microbatch: the sequences (longest first) cut into
// buckets of about equal load, one per distinct degree; then greedily, the first bucket whose
// head fits opens a group on the lowest free ranks or joins the least-loaded group of its size,
// until balanced within 5% once smaller degrees began; the most loaded group gives back its last
// sequence while that narrows the spread; the smallest groups double onto the ranks left empty.
// What did not fit waits for the next microbatch. Groups are contiguous blocks of ranks in the
// order they opened; a group's members run its sequences one after another.
#pragma once

#include <cstdint>
#include <vector>

#include "parallelism/context_parallel_cost.h"
#include "parallelism/hdp_planner.h"

namespace rondo {

// Every sequence's placement (by index) under Megatron-LM's scheduler, its seconds from `cost`.
std::vector<HdpPlacement> megatron_placements(const std::vector<int64_t>& lengths, const HdpOptions& options,
                                              const ContextParallelCost& cost);

}  // namespace rondo

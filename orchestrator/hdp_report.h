// HDP (parallel.hdp) from a config: the planner's options and cost model, the dataset's document
// lengths, and `rondo plan`'s comparison of the policies -- static, megatron and rondo planning the
// same sampled batches (data/hdp_batches.h), each's mean step time, busy max/mean over the ranks,
// lower bound and planner wall time (plan JSON's `hdp` object; a table without --json).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "orchestrator/config.h"
#include "parallelism/hdp_planner.h"

namespace rondo {

HdpOptions hdp_options(const Config& config);        // max_tokens_per_rank 0 -> model.seq_length
int64_t hdp_tokens_per_step(const Config& config);   // data.tokens_per_step 0 -> global batch x seq
ContextParallelCost hdp_cost(const Config& config);  // pipeline.device_tflops, pipeline.p2p_*
// The dataset's document lengths in tokens (a lognormal mix or an indexed dataset); throws
// ConfigError naming data.path for other formats.
std::vector<int64_t> hdp_document_lengths(const Config& config);

struct HdpReport {
  // Keyed by policy (static, megatron, rondo): step_time, busy_max_over_mean, lower_bound,
  // planner_seconds (means over the batches), and degrees ([group size, sequences] pairs, summed).
  nlohmann::json policies;
  // The sampling behind it: batches, mean sequences and tokens per batch, the longest sequence,
  // the ranks and the cap.
  nlohmann::json batches;
};
HdpReport hdp_report(const Config& config, int64_t batches);
std::string hdp_report_text(const HdpReport& report, const Config& config);

}  // namespace rondo

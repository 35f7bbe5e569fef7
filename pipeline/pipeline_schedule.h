// Pipeline schedules as per-rank ordered compute actions (pure functions, no LibTorch), and the
// even layer partition into stages. The plan builder adds sends/receives with peer ranks.
#pragma once

#include <string>
#include <vector>

namespace rondo {

enum class ComputeKind { kF, kB, kI, kW };

struct ComputeAction {
  ComputeKind kind;
  int stage;
  int microbatch;
  bool operator==(const ComputeAction&) const = default;
};

struct StageLayers {
  int index = 0;
  int first_layer = 0;
  int num_layers = 0;
  bool has_embedding = false;
  bool has_lm_head = false;
};

// Splits `num_layers` transformer blocks into pp*vpp contiguous stages of equal size (the
// config validator guarantees divisibility); stage 0 holds the embedding, the last the LM head.
std::vector<StageLayers> partition_layers_evenly(int num_layers, int pp, int vpp);

// The stages held by pipeline rank `pp_rank`: r, r+pp, ... (Megatron's interleaved placement).
std::vector<int> stages_of_pipeline_rank(int pp_rank, int pp, int vpp);

// Compute actions of pipeline rank `pp_rank` for one step of `microbatches` microbatches.
// With pp == 1 every schedule is the same sequence F0 B0 F1 B1 ... (gradient accumulation).
// Schedules with more than one stage per rank or split backward need their own generator:
// asking for one that is not available throws PlanError naming pipeline.schedule.
std::vector<ComputeAction> generate_schedule(const std::string& schedule, int pp_rank, int pp,
                                             int microbatches);

// The pipeline.schedule values generate_schedule() accepts for pp > 1.
const std::vector<std::string>& schedules_with_generator();

}  // namespace rondo

// The planner's view of a model (parallelism/model_parameters.h: GptDims) from the config's model
// section or a plan's ModelSpec: one place that maps a family and its keys onto the cost formulas.
#pragma once

#include <cstdint>

#include "orchestrator/config.h"
#include "parallelism/model_parameters.h"
#include "plan.pb.h"

namespace rondo {

// `expert_parallel`: the ranks sharing an MoE layer's experts (a rank holds num_experts / it); 1
// counts every expert (the whole model).
GptDims model_dims(const ModelConfig& m, int64_t expert_parallel = 1);
GptDims model_dims(const plan::ModelSpec& m, int64_t expert_parallel = 1);

}  // namespace rondo

// The profiling pass behind `moe.a2a_overlap_degree: auto` (FSMoE): on the job's own ranks, time
// the expert group's all-to-all at a few sizes and one expert's forward at a few row counts, fit
// alpha + beta * n to each (parallelism/moe_cost.h), and take the group's slowest member's
// figures so that every member predicts, and picks, the same degrees.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "parallelism/exec/moe_layer.h"
#include "parallelism/moe_cost.h"

namespace rondo {

class Collectives;

// Collective over `group`. `expert`: one of the layer's experts, run forward and backward (its
// gradients are zeroed again afterwards). Timed at the sizes the layer's pipeline uses at each
// profiled degree d (moe_profiled_degrees): all-to-alls of work.rows / d rows, expert calls of
// work.rows / (d * local experts) rows.
MoeCosts profile_moe_costs(Collectives& group, ExpertMlp& expert, const MoeLayerWork& work);

}  // namespace rondo

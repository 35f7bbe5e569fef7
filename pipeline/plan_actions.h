// A pipeline rank's lowered steps (pipeline/transfer_lowering.h) as plan actions: what the plan
// builder writes for every rank of a static plan, and what a worker writes for itself when a step
// has its own schedule (chunked pipeline training; pipeline/exec/step_schedule.h). Plain C++ on
// the plan's protobuf types.
#pragma once

#include <functional>
#include <vector>

#include "pipeline/transfer_lowering.h"
#include "proto/plan.pb.h"

namespace rondo {

plan::Action make_action(plan::ActionKind kind, int stage, int microbatch, int peer);

// Appends `steps` to `out`, a transfer's peer (a pipeline rank) mapped to its world rank.
void append_plan_actions(const std::vector<PipelineStep>& steps, const std::function<int(int)>& world_rank_of,
                         google::protobuf::RepeatedPtrField<plan::Action>& out);

}  // namespace rondo

// The pipeline schedule a plan runs, rebuilt from its actions for the simulator: the compute
// actions (F, B, I, W) of data-parallel replica 0's pipeline ranks, in order. With the op
// durations a step measured, simulate_schedule() then predicts that step's bubble. An
// asynchronous plan gives the stream of several steps (iterations > 1): steady_state_bubble().
#pragma once

#include "pipeline/pipeline_schedule.h"
#include "proto/plan.pb.h"

namespace rondo {

PipelineSchedule schedule_of_plan(const plan::Plan& plan);

}  // namespace rondo

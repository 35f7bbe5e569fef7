// validate_schedule: proves a schedule well formed or names the first rule it breaks:
//  1. shape: one action list per rank, stages and microbatches in range;
//  2. counts: every stage runs F, and B (or I and W when split) exactly once per microbatch;
//  3. order on a rank: F of a microbatch before its B/I, I before W;
//  4. progress: executed with blocking receives, every rank finishes (no deadlock).
// Sends and receives are implied by stage boundaries between ranks, so each has its partner by
// construction; rule 4 checks that the order lets every receive complete.
#pragma once

#include "pipeline/pipeline_schedule.h"

namespace rondo {

// Throws PlanError("rule N (...): ...") naming the rank and action.
void validate_schedule(const PipelineSchedule& schedule);

}  // namespace rondo

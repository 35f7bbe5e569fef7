// Transfer lowering: a schedule's per-rank compute actions become per-rank steps with the
// point-to-point transfers between pipeline ranks made explicit — a receive before each input
// another rank produced, a send after each output another rank consumes (once per consuming
// rank). The plan builder maps the steps onto plan actions and world ranks.
#pragma once

#include <vector>

#include "pipeline/pipeline_schedule.h"

namespace rondo {

enum class StepKind { kF, kB, kI, kW, kSendF, kRecvF, kSendB, kRecvB };

struct PipelineStep {
  StepKind kind;
  int stage;
  int microbatch;
  int peer;  // the other pipeline rank of a transfer, -1 for compute
};

std::vector<std::vector<PipelineStep>> lower_transfers(const PipelineSchedule& schedule);

}  // namespace rondo

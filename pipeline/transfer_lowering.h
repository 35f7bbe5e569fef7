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
  // An asynchronous step's window: a forward (or its transfer) of the next step's microbatch.
  bool ahead = false;
};

std::vector<std::vector<PipelineStep>> lower_transfers(const PipelineSchedule& schedule);

// One step of an asynchronous schedule (PipeDream-2BW: an endless stream, `schedule.async` with
// three or more iterations), per rank: everything the rank does between its last backward of one
// iteration (with that backward's sends) and its last backward of the next, taken from the
// stream's steady state. Microbatches are numbered within their step, 0..microbatches-1; the
// forwards that already belong to the next step (a rank's warm-up in a flushed 1F1B) are `ahead`.
// A stream starts by running a window's ahead steps as its own step's (the warm-up) and ends by
// leaving them out (the drain). Throws std::logic_error for a schedule that is not such a stream.
std::vector<std::vector<PipelineStep>> lower_async_window(const PipelineSchedule& schedule);

// The stream a worker runs when it repeats those windows `iterations` times: the warm-up (the
// window's ahead forwards as the first step's own), then each window, its ahead forwards taken
// for the next step's, the last without them. For 1F1B (PipeDream-2BW) this is the stream itself;
// a stream whose steady state is not periodic per step (roundpipe's dispatch rotates workers from
// one iteration to the next) becomes the periodic one the executor runs.
PipelineSchedule periodic_async_stream(const PipelineSchedule& stream, int iterations);

// One rank's window as compute actions, each ahead or not, strung into `iterations` steps the way
// the executor runs them (the warm-up, the windows, the last without its ahead actions);
// microbatch j of step k becomes k * microbatches + j.
struct WindowAction {
  ComputeAction action;
  bool ahead = false;
};
std::vector<ComputeAction> string_windows(const std::vector<WindowAction>& window, int microbatches,
                                          int iterations);

}  // namespace rondo

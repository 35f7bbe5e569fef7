// Plan assembly: a validated Config becomes the protobuf Plan every worker executes (mesh and
// groups, stages, per-rank actions and microbatch assignment), plus its JSON and human views.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "orchestrator/config.h"
#include "proto/plan.pb.h"
#include "proto/plan_version.h"

namespace rondo {

plan::Plan build_plan(const Config& config);

// The plan's pipeline schedule simulated with the predicted op durations, as a Gantt chart (SVG).
std::string plan_gantt_svg(const Config& config);

// Checks that every send has exactly one matching receive on its peer and every receive one
// send (same direction, producing stage and microbatch). Throws PlanError naming the first
// unmatched transfer.
void validate_plan_transfers(const plan::Plan& plan);

// Whether the plan would deadlock on an executor whose sends block until the peer reaches the
// matching receive (rendezvous semantics: MPI_Ssend, or any message above the eager limit when
// receives are posted only where they stand in the plan). Returns the ranks and actions that
// wait on each other, or an empty string when the plan runs under those semantics. rondo's
// executor posts every receive first and never blocks on a send, so it runs either kind; this
// tells whether a plan is portable to one that does not.
std::string blocking_send_deadlock(const plan::Plan& plan);

// Parameters of the GPT the plan describes (embeddings, blocks, final norm, LM head).
int64_t count_parameters(const plan::ModelSpec& model);

// "0F3" (stage 0, forward, microbatch 3) in the action CSV form of torch.distributed.pipelining;
// sends/receives as "SEND_F0>2" (to rank 2) / "RECV_B0<1"; "ALLREDUCE", "OPTIM".
std::string action_to_string(const plan::Action& action);

// The JSON of `rondo plan --json` (documented in docs/plan.md). Actions per rank are included
// when `with_actions` is true.
nlohmann::json plan_to_json(const plan::Plan& plan, bool with_actions);

// A short human summary for the terminal.
std::string plan_summary(const plan::Plan& plan);

// With training.emulate_compute: a warning line when the plan's shortest op lasts under
// kShortestEmulatedOpS (the executor's per-action overhead then distorts the measured bubble),
// naming the pipeline.device_tflops that lengthens it to that; empty otherwise.
inline constexpr double kShortestEmulatedOpS = 1e-3;
std::string emulated_op_warning(const plan::Plan& plan);

}  // namespace rondo

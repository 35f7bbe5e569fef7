// The plan's views: `rondo plan --json` (docs/plan.md), the terminal summary, actions in the CSV
// form of torch.distributed.pipelining, and the emulated-compute warning. Plain C++.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "proto/plan.pb.h"

namespace rondo {

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

// The most memory one GPU holds today (NVIDIA B300, 288 GB of HBM3e).
inline constexpr double kLargestGpuBytes = 288e9;
// A warning line when a pipeline rank's predicted memory is more than its device could hold: the
// largest GPU (training.device cuda) or `host_bytes` (cpu: this machine's memory), naming
// pipeline.memory_cap_gb, which turns the warning into a refusal; empty when every rank fits.
std::string memory_warning(const plan::Plan& plan, double host_bytes);
// This machine's physical memory, bytes.
double host_memory_bytes();

}  // namespace rondo

// The plan is the contract between coordinator and worker: before anything runs, every enum the
// worker acts on must hold a value this worker knows. An unset or unknown value (a plan from
// another rondo, or a corrupt one) is refused with the field named, never read as a default.
// comms.backend nccl is refused too: this worker's collectives run over MPI only so far.
#pragma once

namespace rondo {

namespace plan {
class Plan;
}

// Throws PlanError naming the first field that fails.
void check_plan_contract(const plan::Plan& plan);

}  // namespace rondo

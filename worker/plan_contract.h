// The plan is the contract between coordinator and worker: before anything runs, every enum the
// worker acts on must hold a value this worker knows. An unset or unknown value (a plan from
// another rondo, or a corrupt one) is refused with the field named, never read as a default.
// comms.backend nccl is refused too: this worker's collectives run over MPI only so far. So is a
// model.family the worker does not build.
#pragma once

#include <string>
#include <vector>

namespace rondo {

namespace plan {
class Plan;
}

// Throws PlanError naming the first field that fails. `model_families`: the families this worker
// builds (worker/model_family.h's model_family_names()).
void check_plan_contract(const plan::Plan& plan, const std::vector<std::string>& model_families);

}  // namespace rondo

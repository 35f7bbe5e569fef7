// The checks of a plan's point-to-point transfers: every send matched by a receive, and whether the
// plan would deadlock under blocking (rendezvous) sends.
#pragma once

#include <string>

#include "proto/plan.pb.h"

namespace rondo {

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

}  // namespace rondo

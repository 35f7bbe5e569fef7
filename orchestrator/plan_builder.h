// Plan assembly: a validated Config becomes the protobuf Plan every worker executes (mesh and
// groups, stages, per-rank actions and microbatch assignment); its transfers are checked by
// orchestrator/plan_transfer_checks.h.
// Its JSON and human views: orchestrator/plan_views.h.
#pragma once

#include <cstdint>
#include <string>

#include "orchestrator/config.h"
#include "orchestrator/plan_transfer_checks.h"
#include "parallelism/device_mesh.h"
#include "proto/plan.pb.h"
#include "proto/plan_version.h"

namespace rondo {

plan::Plan build_plan(const Config& config);
// The config's device mesh (parallel.*); throws PlanError when the sizes do not fit the world.
DeviceMesh mesh_of(const Config& config);

// The plan's pipeline schedule simulated with the predicted op durations, as a Gantt chart (SVG).
std::string plan_gantt_svg(const Config& config);

}  // namespace rondo

// `rondo plan --traffic`: the link loads a plan's data-parallel rings put on the config's fabric
// (topology.*) -- as hashing places them (ECMP, rings in rank order: "before") and as rondo plans
// them (rings by leaf and host, a spine per flow, degraded links avoided: "after"; the plan's rings
// are these unless comms.avoid_links reorders them). Every ring's gradients are all-reduced at
// once, as they are at the end of a step.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "orchestrator/config.h"
#include "proto/plan.pb.h"

namespace rondo {

// Throws ConfigError naming topology.leaves when the config has no fabric.
nlohmann::json traffic_report(const Config& config, const plan::Plan& plan);
std::string traffic_report_text(const nlohmann::json& report);

}  // namespace rondo

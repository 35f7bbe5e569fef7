// `rondo plan` with mixture-of-experts layers: for each MoE layer, the expert pipeline's predicted
// seconds at every candidate degree (forward and backward, parallelism/moe_cost.h) and the degrees
// a run would use — the configured ones, or the cost model's choice for `auto`. The costs are a
// run's profiled moe_costs.json when moe.cost_file names one, the config's device and link
// figures otherwise (the workers profile their own at start-up).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "orchestrator/config.h"

namespace rondo {

// [{"layer", "degree_predictions": {"d": seconds forward + backward}, "forward_s", "backward_s",
//   "chosen_degree", "chosen_bwd_degree"}], plus the costs used; throws ConfigError naming
// moe.cost_file for a file it cannot read.
nlohmann::json moe_layers_report(const Config& config);
std::string moe_layers_text(const nlohmann::json& report);
// What an MoE block's exchanges add to a microbatch's forward and backward beyond its experts'
// compute, at the degrees a run would use (0 without expert parallelism): the step prediction's.
struct MoeExchangeSeconds {
  double forward = 0, backward = 0;
};
MoeExchangeSeconds moe_exposed_exchange(const Config& config);

}  // namespace rondo

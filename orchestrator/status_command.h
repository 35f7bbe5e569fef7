// `rondo status RUN_DIR`: the job's state in a terminal, from RUN_DIR/state.json, which the
// coordinator rewrites every second while it runs (the same JSON as the dashboard's /api/state).
// `rondo control RUN_DIR checkpoint|stop`: an operator's command to the running job.
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

namespace rondo {

// Seconds after which a running job's state.json counts as stale (the coordinator is gone).
inline constexpr double kStateStaleAfterS = 10.0;

// The text `rondo status` prints for a state, `age_s` seconds old.
std::string status_text(const nlohmann::json& state, double age_s);

// Prints the status; `json` prints state.json itself. Returns 0, or 1 when there is no state.
int run_status(const std::string& run_dir, bool json);

// `rondo control RUN_DIR checkpoint|stop`: asks the job's coordinator, with the token it left in
// RUN_DIR/control.token, for a checkpoint after the current step, or a checkpoint and a clean stop.
int run_control(const std::string& run_dir, const std::string& action, const std::string& reason);

}  // namespace rondo

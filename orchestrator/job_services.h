// JobServices: what lives as long as a `rondo run` job, across its restarts -- its state, the
// control plane (a random token, TLS beyond loopback with the certificate saved as
// RUN_DIR/control.crt), the fault monitor reading its reports, the dashboard, and RUN_DIR/state.json
// for `rondo status` -- and the workers' environment that points them at it.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "control/control_server.h"
#include "control/job_state.h"
#include "orchestrator/config.h"
#include "orchestrator/dashboard_server.h"
#include "orchestrator/fault_monitor.h"
#include "orchestrator/run_command.h"
#include "proto/plan.pb.h"

namespace rondo {

struct JobServices {
  JobServices(const Config& config, const plan::Plan& plan, const std::filesystem::path& run_dir,
              const RunOptions& options);

  void event(nlohmann::json e) { state.add_event(std::move(e)); }
  // Saves state.json, at most about once a second unless `now`.
  void save_state(bool now);

  std::filesystem::path run_dir;
  std::string token;  // the job's secret, handed to the workers in their environment
  JobState state;
  FaultMonitor faults;
  ControlServer control;
  std::unique_ptr<DashboardServer> dashboard;
  // Per rank: how much slower than its stages predict a replan found it (empty: none found). The
  // detector's slow-stage rule expects that of it from then on, rather than naming it again.
  std::vector<double> known_slowness;
  std::chrono::steady_clock::time_point state_saved{};
};

// The workers' environment (the control plane's address, the job token, and the fingerprint of
// its certificate that they pin when it serves TLS); SIGUSR1 becomes a stop for every rank.
void prepare_launch(const ControlServer& control, const std::string& token);

}  // namespace rondo

// DashboardServer: the job's health over HTTP, for people and for Prometheus. Serves the page
// (orchestrator/dashboard/index.html, embedded at build time: no CDN, no external asset), the
// state it polls (/api/state, JobState as JSON), /metrics (Prometheus text format), and the plan's
// Gantt chart (/plan.svg). Read-only: whatever would change the job goes through the control
// plane and its token. Listens on loopback unless told otherwise (launch.dashboard_address).
#pragma once

#include <memory>
#include <string>
#include <thread>

namespace rondo {

class JobState;

class DashboardServer {
 public:
  // Throws Error naming the key when the address and port cannot be bound.
  DashboardServer(JobState& state, const std::string& address, int port, std::string plan_svg);
  ~DashboardServer();
  DashboardServer(const DashboardServer&) = delete;
  DashboardServer& operator=(const DashboardServer&) = delete;

  std::string url() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The page itself (embedded from orchestrator/dashboard/index.html).
const std::string& dashboard_page();

}  // namespace rondo

#include "orchestrator/dashboard_server.h"

#include <httplib.h>

#include "common/errors.h"
#include "common/logging.h"
#include "control/job_state.h"

namespace rondo {

constexpr size_t kDashboardMaxRequestBytes = 64 * 1024;
constexpr time_t kDashboardIoTimeoutS = 5;

struct DashboardServer::Impl {
  httplib::Server server;
  std::thread thread;
  std::string address;
  int port = 0;
  std::string plan_svg;
};

DashboardServer::DashboardServer(JobState& state, const std::string& address, int port, std::string plan_svg)
    : impl_(std::make_unique<Impl>()) {
  impl_->plan_svg = std::move(plan_svg);
  auto& s = impl_->server;
  s.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(dashboard_page(), "text/html; charset=utf-8");
  });
  s.Get("/api/state", [&state](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    res.set_content(state.to_json().dump(), "application/json");
  });
  s.Get("/metrics", [&state](const httplib::Request&, httplib::Response& res) {
    res.set_content(state.prometheus(), "text/plain; version=0.0.4; charset=utf-8");
  });
  s.Get("/plan.svg", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(impl_->plan_svg, "image/svg+xml");
  });
  // A dashboard of small GETs: a larger request is refused (413) unread, and a client that sends
  // or reads too slowly is dropped instead of holding a server thread.
  s.set_payload_max_length(kDashboardMaxRequestBytes);
  s.set_read_timeout(kDashboardIoTimeoutS, 0);
  s.set_write_timeout(kDashboardIoTimeoutS, 0);
  // Read-only: anything else is refused, whatever its method.
  s.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.status == 404)
      res.set_content("not found: the dashboard serves /, /api/state, /metrics, /plan.svg\n", "text/plain");
  });
  impl_->address = address;
  impl_->port = port;
  if (!s.bind_to_port(address.c_str(), port)) {
    throw ConfigError("launch.dashboard_port", "cannot listen on " + address + ":" + std::to_string(port) +
                                                   " (in use, or not a local address)");
  }
  impl_->thread = std::thread([this] { impl_->server.listen_after_bind(); });
  logging::get("orchestrator")->info("dashboard on {}", url());
}

DashboardServer::~DashboardServer() {
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::string DashboardServer::url() const {
  return "http://" + impl_->address + ":" + std::to_string(impl_->port) + "/";
}

}  // namespace rondo

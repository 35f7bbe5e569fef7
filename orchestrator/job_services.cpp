#include "orchestrator/job_services.h"

#include <csignal>
#include <cstdlib>
#include <iomanip>
#include <random>
#include <sstream>

#include "common/atomic_file.h"
#include "common/errors.h"
#include "common/line_appender.h"
#include "common/logging.h"
#include "control/job_certificate.h"
#include "orchestrator/attempt_watch.h"
#include "orchestrator/plan_builder.h"

namespace rondo {

namespace fs = std::filesystem;

namespace {

// A random hex token for the job's control plane (handed to workers in the environment).
std::string random_token() {
  std::random_device rd;
  std::ostringstream ss;
  for (int i = 0; i < 4; ++i) ss << std::hex << std::setw(8) << std::setfill('0') << rd();
  return ss.str();
}

void append_event(const fs::path& run_dir, const nlohmann::json& e) {
  append_line((run_dir / "events.jsonl").string(), e.dump());
}

// The control plane's options with the job's token, which is also saved for operators
// (`rondo control RUN_DIR ...`), readable by the run directory's owner only. Beyond loopback it
// serves TLS with a certificate of its own (JobServices saves it as RUN_DIR/control.crt).
ControlServerOptions control_options(const Config& config, const fs::path& run_dir,
                                     const std::string& token) {
  ControlServerOptions co;
  co.bind_address = config.launch.control_address;
  co.tls = !listens_on_loopback(co.bind_address);
  co.token = token;
  write_file_atomic((run_dir / "control.token").string(), co.token + "\n", 0600);
  co.heartbeat_interval_s = config.launch.heartbeat_interval_s;
  return co;
}

}  // namespace

JobServices::JobServices(const Config& config, const plan::Plan& plan, const fs::path& run_dir,
                         const RunOptions& options)
    : run_dir(run_dir),
      token(random_token()),
      state(run_dir.string(), static_cast<int>(plan.mesh().world_size()),
            static_cast<int64_t>(plan.training().train_iters())),
      faults(state, run_dir, detector_options(config.faults), config.faults.policy,
             parse_avoid_links(config.comms.avoid_links, plan.mesh().world_size())),
      control(state, control_options(config, run_dir, token)) {
  // No worker runs before the first attempt launches: no report reaches the state before this.
  state.set_report_sink([this](const report::StepReport& r) { faults.add_report(r); });
  logging::get("orchestrator")
      ->info("control plane on {}{}", control.address(),
             control.cert_sha256().empty() ? "" : ", TLS (certificate sha256 " + control.cert_sha256() + ")");
  if (!control.cert_pem().empty()) write_file_atomic((run_dir / "control.crt").string(), control.cert_pem());
  state.set_control_endpoint(control.address(), control.cert_sha256());
  const int64_t port = options.dashboard_port >= 0 ? options.dashboard_port : config.launch.dashboard_port;
  if (port > 0) {
    dashboard = std::make_unique<DashboardServer>(state, config.launch.dashboard_address,
                                                  static_cast<int>(port), plan_gantt_svg(config));
    std::fprintf(stderr, "rondo: dashboard at %s\n", dashboard->url().c_str());
  }
  state.set_event_sink([dir = run_dir](const nlohmann::json& e) { append_event(dir, e); });
}

void JobServices::save_state(bool now) {
  if (!now && std::chrono::steady_clock::now() - state_saved < std::chrono::seconds(1)) return;
  state_saved = std::chrono::steady_clock::now();
  try {
    write_file_atomic((run_dir / "state.json").string(), state.to_json().dump() + "\n");
  } catch (const Error&) {
  }
}

// The workers' environment (the control plane's address, the job token, and the fingerprint of
// its certificate that they pin when it serves TLS).
void prepare_launch(const ControlServer& control, const std::string& token) {
  ::setenv("RONDO_LOG", "info", 0);
  ::setenv("RONDO_CONTROL_ADDRESS", control.address().c_str(), 1);
  ::setenv("RONDO_JOB_TOKEN", token.c_str(), 1);
  if (control.cert_sha256().empty()) {
    ::unsetenv("RONDO_CONTROL_CERT_SHA256");
  } else {
    ::setenv("RONDO_CONTROL_CERT_SHA256", control.cert_sha256().c_str(), 1);
  }
  // SIGUSR1 (Slurm's warning before the time limit) becomes a STOP for every rank (AttemptWatch).
  struct sigaction usr1 {};
  usr1.sa_handler = [](int) { g_stop_requested = SIGUSR1; };
  ::sigaction(SIGUSR1, &usr1, nullptr);
}

}  // namespace rondo

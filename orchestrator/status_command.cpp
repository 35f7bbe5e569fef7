#include "orchestrator/status_command.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/atomic_file.h"
#include "common/errors.h"
#include "control/control_client.h"

namespace rondo {

namespace fs = std::filesystem;

std::string status_text(const nlohmann::json& s, double age_s) {
  std::ostringstream out;
  const auto& p = s["progress"];
  std::string phase = s.value("phase", "?");
  if ((phase == "running" || phase == "starting" || phase == "restarting") && age_s > kStateStaleAfterS) {
    phase += " (no update for " + std::to_string(static_cast<int>(age_s)) + " s: is the coordinator gone?)";
  }
  out << "run:      " << s.value("run_dir", "?") << "\n";
  out << "status:   " << phase << ", attempt " << s.value("attempt", 0) << ", restarts "
      << s.value("restarts", 0) << "\n";
  char buf[160];
  std::snprintf(buf, sizeof(buf), "progress: step %lld/%lld",
                static_cast<long long>(p.value("step", int64_t{0})),
                static_cast<long long>(s.value("train_iters", int64_t{0})));
  out << buf;
  if (p.contains("loss")) {
    std::snprintf(buf, sizeof(buf), ", loss %.4f", p["loss"].get<double>());
    out << buf;
  }
  if (p.contains("tokens_per_s")) {
    std::snprintf(buf, sizeof(buf), ", %.0f tokens/s, ETA %.0f s", p["tokens_per_s"].get<double>(),
                  p["eta_s"].get<double>());
    out << buf;
  }
  if (p.contains("val_loss")) {
    std::snprintf(buf, sizeof(buf), ", val loss %.4f (step %lld)", p["val_loss"].get<double>(),
                  static_cast<long long>(p["val_step"].get<int64_t>()));
    out << buf;
  }
  out << "\n";
  uint64_t refused = 0;
  for (const auto& [reason, n] : s["refused_calls"].items()) refused += n.get<uint64_t>();
  out << "control:  " << s.value("reports", uint64_t{0}) << " step reports, " << refused
      << " refused calls\n";
  out << "ranks:\n";
  int shown = 0;
  for (const auto& r : s["ranks"]) {
    if (++shown > 32) {
      out << "  ... " << s["ranks"].size() - 32 << " more (rondo status --json)\n";
      break;
    }
    std::snprintf(buf, sizeof(buf), "  %4d  %-10s step %-6lld", r.value("rank", -1),
                  r.value("state", "?").c_str(), static_cast<long long>(r.value("step", int64_t{0})));
    out << buf;
    if (r.contains("host")) out << " pid " << r.value("pid", 0) << " on " << r.value("host", "?");
    if (r.contains("last_report")) {
      std::snprintf(buf, sizeof(buf), ", step time %.1f ms",
                    r["last_report"].value("step_time_s", 0.0) * 1000);
      out << buf;
    }
    if (r.contains("status") && r["status"].contains("error"))
      out << "\n        " << r["status"]["error"].get<std::string>();
    out << "\n";
  }
  const auto& events = s["events"];
  if (!events.empty()) {
    out << "events (latest last):\n";
    for (size_t i = events.size() > 8 ? events.size() - 8 : 0; i < events.size(); ++i) {
      auto e = events[i];
      e.erase("time");
      out << "  " << e.dump() << "\n";
    }
  }
  return out.str();
}

int run_status(const std::string& run_dir, bool json) {
  const fs::path path = fs::path(run_dir) / "state.json";
  if (!fs::exists(path)) {
    std::fprintf(
        stderr,
        "rondo: %s has no state.json: not a run directory of `rondo run`, or the job has not started\n",
        run_dir.c_str());
    return kExitFailure;
  }
  const auto state = nlohmann::json::parse(read_file(path.string()));
  if (json) {
    std::cout << state.dump(2) << "\n";
    return kExitOk;
  }
  const double age =
      std::chrono::duration<double>(fs::file_time_type::clock::now() - fs::last_write_time(path)).count();
  std::cout << status_text(state, age);
  return kExitOk;
}

int run_control(const std::string& run_dir, const std::string& action, const std::string& reason) {
  const fs::path dir(run_dir);
  if (!fs::exists(dir / "state.json") || !fs::exists(dir / "control.token")) {
    std::fprintf(stderr, "rondo: %s has no running job (no state.json or control.token)\n", run_dir.c_str());
    return kExitFailure;
  }
  const auto state = nlohmann::json::parse(read_file((dir / "state.json").string()));
  const std::string phase = state.value("phase", "");
  if (phase != "running" && phase != "starting" && phase != "restarting") {
    std::fprintf(stderr, "rondo: the job in %s is %s, not running\n", run_dir.c_str(), phase.c_str());
    return kExitFailure;
  }
  std::string token = read_file((dir / "control.token").string());
  token.erase(token.find_last_not_of(" \n") + 1);
  const auto kind = action == "stop" ? control::Command::STOP : control::Command::CHECKPOINT_NOW;
  send_operator_command({state.value("control_address", ""), token, state.value("control_cert_sha256", "")},
                        kind, reason);
  std::printf(
      "rondo: asked the job in %s to %s\n", run_dir.c_str(),
      action == "stop" ? "checkpoint and stop after its current step" : "checkpoint after its current step");
  return kExitOk;
}

}  // namespace rondo

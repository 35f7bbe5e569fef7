#include "orchestrator/run_command.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <google/protobuf/util/json_util.h>

#include "common/atomic_file.h"
#include "common/checkpoint_manifest.h"
#include "common/duration_format.h"
#include "common/errors.h"
#include "common/line_appender.h"
#include "common/logging.h"
#include "control/control_server.h"
#include "control/job_state.h"
#include "launch/launcher_report.h"
#include "launch/mpirun_command.h"
#include "launch/process_runner.h"
#include "launch/srun_command.h"
#include "orchestrator/dashboard_server.h"
#include "orchestrator/plan_builder.h"
#include "proto/report.pb.h"

namespace rondo {

namespace fs = std::filesystem;

namespace {

std::string default_run_dir() {
  std::time_t now = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof(buf), "runs/%Y%m%d-%H%M%S", std::localtime(&now));
  return buf;
}

std::string find_worker(const std::string& given) {
  if (!given.empty()) return given;
  if (const char* env = std::getenv("RONDO_WORKER")) return env;
  std::error_code ec;
  const auto self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const auto& candidate : {self.parent_path() / "rondo-worker",
                                  self.parent_path().parent_path() / "worker" / "rondo-worker"}) {
      if (fs::exists(candidate)) return candidate.string();
    }
  }
  throw Error("cannot find rondo-worker beside " + self.string() + "; set RONDO_WORKER to its path");
}

void append_event(const fs::path& run_dir, const nlohmann::json& e) {
  append_line((run_dir / "events.jsonl").string(), e.dump());
}

std::atomic<bool> g_stop_requested{false};

// After a failure, how long the coordinator waits for the other ranks' flight dumps.
constexpr auto kFlightCollectionWait = std::chrono::seconds(10);

// logs/rank-K.status.json (protobuf JSON of report.WorkerStatus), or nullopt.
std::optional<report::WorkerStatus> read_status(const fs::path& path) {
  try {
    report::WorkerStatus st;
    if (google::protobuf::util::JsonStringToMessage(read_file(path.string()), &st).ok()) return st;
  } catch (const Error&) {
  }
  return std::nullopt;
}

// "rank 1 (pid 4242 on vm)" from RUN_DIR/workers.json, or "rank 1" when it has no entry.
std::string describe_rank(const fs::path& run_dir, int rank, const JobState* state = nullptr) {
  if (state) {
    if (const auto reg = state->registration(rank)) {
      return "rank " + std::to_string(rank) + " (pid " + std::to_string(reg->pid()) + " on " + reg->host() +
             ")";
    }
  }
  try {
    for (const auto& w : nlohmann::json::parse(read_file((run_dir / "workers.json").string()))) {
      if (w.value("rank", -1) == rank) {
        return "rank " + std::to_string(rank) + " (pid " + std::to_string(w.value("pid", 0)) + " on " +
               w.value("host", std::string("?")) + ")";
      }
    }
  } catch (const std::exception&) {
  }
  return "rank " + std::to_string(rank);
}

}  // namespace

SbatchOptions complete_sbatch_options(SbatchOptions o, const std::string& config_path,
                                      const std::vector<std::string>& overrides) {
  std::error_code ec;
  const auto self = fs::read_symlink("/proc/self/exe", ec);
  o.rondo = self.string();
  o.worker = fs::absolute(find_worker(o.worker)).string();
  o.config_path = config_path.empty() ? "" : fs::absolute(config_path).string();
  o.run_dir = fs::absolute(o.run_dir.empty() ? default_run_dir() : o.run_dir).string();
  o.overrides = overrides;
  // Slurm opens the job's output file there before the script runs.
  fs::create_directories(o.run_dir);
  return o;
}

void check_executable(const Config& c) {
  const auto& p = c.parallel;
  const std::string why =
      " the worker executes data and pipeline parallelism only so far; plan other layouts with `rondo plan`";
  if (p.tensor_model_parallel_size != 1)
    throw ConfigError("parallel.tensor_model_parallel_size", "must be 1 for `rondo run`:" + why);
  if (p.context_parallel_size != 1)
    throw ConfigError("parallel.context_parallel_size", "must be 1 for `rondo run`:" + why);
  if (p.expert_model_parallel_size != 1)
    throw ConfigError("parallel.expert_model_parallel_size", "must be 1 for `rondo run`:" + why);
  if (c.comms.backend != "mpi")
    throw ConfigError("comms.backend", "the worker drives gradients over mpi only so far");
}

namespace {

// A random hex token for the job's control plane (handed to workers in the environment).
std::string random_token() {
  std::random_device rd;
  std::ostringstream ss;
  for (int i = 0; i < 4; ++i) ss << std::hex << std::setw(8) << std::setfill('0') << rd();
  return ss.str();
}

// "step 37/1500 | loss 3.2104 | 21.3k tokens/s | ETA 1m02s", from what the ranks reported.
std::string progress_line(const JobState& state, int attempt) {
  const auto p = state.progress();
  if (p.value("step", int64_t{0}) == 0) return std::string();  // start-up: its log lines say more
  std::ostringstream ss;
  ss << "rondo: step " << p.value("step", int64_t{0}) << "/" << p["train_iters"].get<int64_t>();
  if (p.contains("loss")) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), " | loss %.4f", p["loss"].get<double>());
    ss << buf;
  }
  if (p.contains("tokens_per_s")) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), " | %.1fk tokens/s", p["tokens_per_s"].get<double>() / 1000);
    ss << buf << " | ETA " << format_duration(p["eta_s"].get<double>());
  }
  if (attempt > 0) ss << " | restart " << attempt;
  return ss.str();
}

// mpirun on this machine; srun inside a Slurm allocation (SLURM_JOB_ID) or when told.
std::vector<std::string> launch_command(const Config& config, int world, const std::string& worker,
                                        const std::string& run_dir) {
  const bool in_allocation = std::getenv("SLURM_JOB_ID") != nullptr;
  const std::string& launcher = config.launch.launcher;
  if (launcher == "srun" || (launcher == "auto" && in_allocation)) {
    SrunOptions so;
    so.num_ranks = world;
    so.worker = worker;
    so.run_dir = run_dir;
    so.extra_args = split_args(config.launch.srun_args);
    return srun_command(so);
  }
  MpirunOptions mo;
  mo.num_ranks = world;
  mo.worker = worker;
  mo.run_dir = run_dir;
  mo.extra_args = split_args(config.launch.mpirun_args);
  mo.as_root = ::geteuid() == 0;
  return mpirun_command(mo);
}

// How one attempt ended, as the coordinator saw it.
struct AttemptEnd {
  bool ok = false;
  bool restartable = false;
  int exit_code = kExitFailure;
  std::string reason;               // for people: which rank, where, how
  std::optional<RankEnd> rank_end;  // the launcher named the rank that ended it
};

// Decides from the launcher's result, the typed statuses and the control plane how an attempt
// ended, and whether a restart can help: a dead, hung or cut-off rank, yes; a config, plan or
// training error would fail the same way again.
AttemptEnd judge_attempt(const fs::path& run_dir, int world, const ProcessResult& result,
                         const std::string& ended_by, const JobState& state, const Config& config) {
  AttemptEnd end;
  std::vector<report::WorkerStatus> statuses;
  for (int r = 0; r < world; ++r) {
    if (auto st = read_status(run_dir / "logs" / ("rank-" + std::to_string(r) + ".status.json"))) {
      statuses.push_back(*st);
    } else {
      report::WorkerStatus missing;
      missing.set_rank(r);
      statuses.push_back(missing);
    }
  }
  const bool all_done = std::all_of(statuses.begin(), statuses.end(),
                                    [](const auto& st) { return st.state() == report::DONE; });
  if (result.exit_code == 0 && all_done && !result.stopped) {
    end.ok = true;
    return end;
  }
  if (result.timed_out) {
    end.reason = "timed out after " + shortest_float(config.launch.timeout_s) + " s (launch.timeout_s)";
    return end;
  }
  if (result.interrupted) {
    end.reason = "was interrupted";
    return end;
  }
  std::vector<report::WorkerStatus> failed;
  for (const auto& st : statuses) {
    if (st.state() == report::FAILED) failed.push_back(st);
  }
  const auto log_of = [&](int r) {
    return (run_dir / "logs" / ("rank-" + std::to_string(r) + ".log")).string();
  };
  // A rank killed by a signal or exiting without a word: the launcher names it; it is the cause
  // even when its peers then failed in their communication with it.
  std::optional<RankEnd> launcher_end;
  try {
    launcher_end = parse_mpirun_report(read_file((run_dir / "logs" / "launcher.log").string()));
  } catch (const Error&) {
  }
  // Failures a restart would only repeat.
  const auto deterministic = std::find_if(failed.begin(), failed.end(), [](const auto& st) {
    return st.failure() == report::CONFIG_ERROR || st.failure() == report::PLAN_ERROR ||
           st.failure() == report::TRAINING_ERROR;
  });
  if (deterministic != failed.end()) {
    const auto& f = *deterministic;
    end.reason =
        describe_rank(run_dir, f.rank(), &state) + " failed: " + f.error() + "; see " + log_of(f.rank());
    if (f.failure() == report::CONFIG_ERROR) end.exit_code = kExitConfigError;
    return end;
  }
  end.restartable = true;
  // A rank that exited with status 1 after recording its failure is that failure (the worker's
  // own abort); any other end the launcher names is the cause.
  const bool own_abort =
      launcher_end && launcher_end->signal == 0 && launcher_end->exit_code == kExitFailure && !failed.empty();
  if (launcher_end && !own_abort) {
    end.rank_end = launcher_end;
    end.reason = describe_rank(run_dir, launcher_end->rank, &state) + " " + launcher_end->how() +
                 "; the launcher then stopped the other ranks; see " + log_of(launcher_end->rank);
  } else if (!ended_by.empty()) {
    end.reason = ended_by;
  } else if (!failed.empty()) {
    const auto& f = failed.front();
    end.reason =
        describe_rank(run_dir, f.rank(), &state) + " failed: " + f.error() + "; see " + log_of(f.rank());
  } else {
    end.reason = "the launcher exited with status " + std::to_string(result.exit_code) +
                 " and no rank recorded why; see " + (run_dir / "logs" / "launcher.log").string();
  }
  return end;
}

}  // namespace

int run_job(const Config& config, const RunOptions& options) {
  auto log = logging::get("orchestrator");
  check_executable(config);
  auto plan = build_plan(config);
  const std::string worker = find_worker(options.worker_path);
  const int world = static_cast<int>(plan.mesh().world_size());

  const fs::path run_dir = fs::absolute(options.run_dir.empty() ? default_run_dir() : options.run_dir);
  fs::create_directories(run_dir / "logs");
  fs::create_directories(run_dir / "checkpoints");
  const std::string yaml = to_yaml(config);
  write_file_atomic((run_dir / "config.yaml").string(), yaml);
  write_file_atomic((run_dir / "plan.json").string(), plan_to_json(plan, true).dump(2) + "\n");

  std::fprintf(stderr, "rondo: effective config (saved as %s):\n%s\n", (run_dir / "config.yaml").c_str(),
               yaml.c_str());
  std::fprintf(stderr, "%s", plan_summary(plan).c_str());

  // The control plane and the dashboard live as long as the job, across restarts.
  JobState state(run_dir.string(), world, static_cast<int64_t>(plan.training().train_iters()));
  ControlServerOptions co;
  co.bind_address = config.launch.control_address;
  co.token = random_token();
  // For operators (`rondo control RUN_DIR ...`): readable by the run directory's owner only.
  write_file_atomic((run_dir / "control.token").string(), co.token + "\n");
  fs::permissions(run_dir / "control.token", fs::perms::owner_read | fs::perms::owner_write,
                  fs::perm_options::replace);
  co.heartbeat_interval_s = config.launch.heartbeat_interval_s;
  ControlServer control(state, co);
  log->info("control plane on {}", control.address());
  state.set_control_address(control.address());
  std::unique_ptr<DashboardServer> dashboard;
  const int64_t dashboard_port =
      options.dashboard_port >= 0 ? options.dashboard_port : config.launch.dashboard_port;
  if (dashboard_port > 0) {
    dashboard = std::make_unique<DashboardServer>(state, config.launch.dashboard_address,
                                                  static_cast<int>(dashboard_port), plan_gantt_svg(config));
    std::fprintf(stderr, "rondo: dashboard at %s\n", dashboard->url().c_str());
  }
  state.set_event_sink([&run_dir](const nlohmann::json& e) { append_event(run_dir, e); });
  const auto event = [&](nlohmann::json e) { state.add_event(std::move(e)); };

  const auto cmd = launch_command(config, world, worker, run_dir.string());
  std::string cmd_text;
  for (const auto& a : cmd) cmd_text += (cmd_text.empty() ? "" : " ") + a;
  ::setenv("RONDO_LOG", "info", 0);
  ::setenv("RONDO_CONTROL_ADDRESS", control.address().c_str(), 1);
  ::setenv("RONDO_JOB_TOKEN", co.token.c_str(), 1);

  // SIGUSR1 (Slurm's warning before the time limit) becomes a STOP for every rank.
  struct sigaction usr1 {};
  usr1.sa_handler = [](int) { g_stop_requested = true; };
  ::sigaction(SIGUSR1, &usr1, nullptr);

  // RUN_DIR/state.json for `rondo status`: about every second, and at the end.
  auto state_saved = std::chrono::steady_clock::time_point{};
  const auto save_state = [&](bool now) {
    if (!now && std::chrono::steady_clock::now() - state_saved < std::chrono::seconds(1)) return;
    state_saved = std::chrono::steady_clock::now();
    try {
      write_file_atomic((run_dir / "state.json").string(), state.to_json().dump() + "\n");
    } catch (const Error&) {
    }
  };
  const auto t0 = std::chrono::steady_clock::now();
  const auto heartbeat_timeout = std::chrono::duration_cast<JobState::Clock::duration>(
      std::chrono::duration<double>(config.launch.heartbeat_timeout_s));
  AttemptEnd end;
  for (int attempt = 0;; ++attempt) {
    state.begin_attempt(attempt);
    ::setenv("RONDO_ATTEMPT", std::to_string(attempt).c_str(), 1);
    if (attempt > 0) {
      // Restarts resume from the latest checkpoint, whatever the config said.
      plan.mutable_checkpoint()->set_resume(true);
      plan.mutable_checkpoint()->set_resume_step(0);
    }
    write_file_atomic((run_dir / "plan.pb").string(), plan.SerializeAsString());
    // A run directory may be reused; stale statuses and dumps of the last attempt must not count.
    for (int r = 0; r < world; ++r) {
      for (const char* suffix : {".status.json", ".flight.json"})
        fs::remove(run_dir / "logs" / ("rank-" + std::to_string(r) + suffix));
    }
    state.set_phase("running");
    log->info("launching {} workers with {} (attempt {}): {}", world, cmd.front(), attempt, cmd_text);
    event({{"event", "launch"}, {"attempt", attempt}, {"ranks", world}, {"command", cmd_text}});

    // Watches the attempt: a failed or silent rank ends it, once the others dumped their flight
    // recorders (they are still alive to do so: the launcher has not torn them down yet).
    std::string ended_by;
    std::set<int> gone;  // the failed or silent ranks: no dump to wait for
    std::optional<JobState::Clock::time_point> teardown_since;
    const auto attempt_start = std::chrono::steady_clock::now();
    bool stop_sent = false;
    ProcessMonitor monitor;
    monitor.status_line = [&] { return progress_line(state, attempt); };
    monitor.should_stop = [&] {
      save_state(false);
      if (g_stop_requested && !stop_sent) {
        stop_sent = true;
        log->info("SIGUSR1: every rank checkpoints after its current step and exits");
        event({{"event", "stop_requested"}, {"signal", "SIGUSR1"}});
        state.command(control::Command::STOP, 0);  // the step's maxima carry it to every rank
      }
      if (!teardown_since) {
        const auto failed = state.failed_statuses();
        auto silent = state.silent_ranks(heartbeat_timeout);
        const bool registration_over = std::chrono::steady_clock::now() - attempt_start >
                                       std::chrono::duration<double>(config.launch.register_timeout_s);
        const auto unregistered = registration_over ? state.unregistered_ranks() : std::vector<int>{};
        if (!failed.empty()) {
          const auto& f = failed.front();
          ended_by = describe_rank(run_dir, f.rank()) + " failed: " + f.error();
        } else if (!silent.empty()) {
          ended_by = describe_rank(run_dir, silent.front()) + " sent no heartbeat for " +
                     shortest_float(config.launch.heartbeat_timeout_s) +
                     " s (launch.heartbeat_timeout_s): hung, stopped or cut off";
          event({{"event", "rank_silent"}, {"attempt", attempt}, {"rank", silent.front()}});
        } else if (!unregistered.empty()) {
          std::string ranks;
          for (size_t i = 0; i < unregistered.size() && i < 8; ++i)
            ranks += (i ? ", " : "") + std::to_string(unregistered[i]);
          if (unregistered.size() > 8) ranks += ", ... (" + std::to_string(unregistered.size()) + " in all)";
          ended_by = "rank(s) " + ranks + " did not register with the coordinator within " +
                     shortest_float(config.launch.register_timeout_s) +
                     " s (launch.register_timeout_s): stuck in start-up, or cannot reach " +
                     control.address();
          event({{"event", "ranks_unregistered"}, {"attempt", attempt}, {"ranks", unregistered}});
          silent.insert(silent.end(), unregistered.begin(), unregistered.end());
        }
        if (ended_by.empty()) return false;
        for (const auto& f : failed) gone.insert(f.rank());
        gone.insert(silent.begin(), silent.end());
        log->error("{}; collecting flight recorders before stopping the job", ended_by);
        state.command(control::Command::DUMP_FLIGHT);
        teardown_since = JobState::Clock::now();
        return false;
      }
      // Every rank that did not fail or fall silent dumped, or the wait is over.
      std::set<int> accounted = gone;
      for (const auto& f : state.failed_statuses()) accounted.insert(f.rank());
      for (const auto& d : state.flights()) accounted.insert(d.rank());
      return static_cast<int>(accounted.size()) >= world ||
             JobState::Clock::now() - *teardown_since > kFlightCollectionWait;
    };
    const auto result = run_process(
        cmd, std::chrono::duration<double>(config.launch.timeout_s) - (std::chrono::steady_clock::now() - t0),
        (run_dir / "logs" / "launcher.log").string(), true, monitor);
    end = judge_attempt(run_dir, world, result, ended_by, state, config);
    for (const auto& dump : state.flights()) {
      event({{"event", "flight_dump"},
             {"attempt", attempt},
             {"rank", dump.rank()},
             {"records", dump.records_size()}});
    }
    if (end.ok) break;
    std::fprintf(stderr, "rondo: attempt %d: %s\n", attempt, end.reason.c_str());
    if (end.rank_end) {
      event({{"event", "rank_ended"},
             {"attempt", attempt},
             {"rank", end.rank_end->rank},
             {"how", end.rank_end->how()}});
    }
    event({{"event", "attempt_failed"},
           {"attempt", attempt},
           {"reason", end.reason},
           {"restartable", end.restartable}});
    if (!end.restartable || attempt >= config.launch.max_restarts) break;
    int64_t latest = 0;
    try {
      latest = latest_checkpoint_step((run_dir / "checkpoints").string()).value_or(0);
    } catch (const Error&) {
    }
    state.set_phase("restarting");
    state.count_restart();
    std::fprintf(
        stderr, "rondo: restarting (%d of launch.max_restarts %lld) from %s\n", attempt + 1,
        static_cast<long long>(config.launch.max_restarts),
        latest > 0 ? ("checkpoint step-" + std::to_string(latest)).c_str() : "the start (no checkpoint yet)");
    event({{"event", "restart"}, {"attempt", attempt + 1}, {"from_step", latest}});
  }
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (end.ok && state.last_step() < static_cast<int64_t>(plan.training().train_iters())) {
    state.set_phase("stopped");
    event({{"event", "stopped"}, {"step", state.last_step()}, {"seconds", elapsed}});
    std::fprintf(
        stderr, "rondo: stopped after step %lld of %lld with a checkpoint; the same command resumes it\n",
        static_cast<long long>(state.last_step()), static_cast<long long>(plan.training().train_iters()));
  } else if (end.ok) {
    state.set_phase("finished");
    event({{"event", "finished"}, {"seconds", elapsed}});
    log->info("job finished in {:.1f} s; metrics in {}", elapsed, (run_dir / "metrics.jsonl").string());
  } else {
    state.set_phase("failed");
    event({{"event", "failed"}, {"reason", end.reason}, {"seconds", elapsed}});
    std::fprintf(stderr, "rondo: job failed: %s\n", end.reason.c_str());
  }
  save_state(true);
  if (dashboard && options.linger_s > 0) {
    std::fprintf(stderr, "rondo: dashboard stays up for %.0f s\n", options.linger_s);
    std::this_thread::sleep_for(std::chrono::duration<double>(options.linger_s));
  }
  return end.ok ? kExitOk : end.exit_code;
}

}  // namespace rondo

#include "orchestrator/run_command.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/atomic_file.h"
#include "common/errors.h"
#include "common/logging.h"
#include "launch/launcher_report.h"
#include "launch/mpirun_command.h"
#include "launch/process_runner.h"
#include "orchestrator/plan_builder.h"

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

void append_event(const fs::path& run_dir, nlohmann::json e) {
  e["time"] = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::ofstream(run_dir / "events.jsonl", std::ios::app) << e.dump() << "\n";
}

struct RankOutcome {
  int rank;
  std::string state;
  std::string error;
};

std::vector<RankOutcome> read_outcomes(const fs::path& logs, int world) {
  std::vector<RankOutcome> out;
  for (int r = 0; r < world; ++r) {
    RankOutcome o{r, "missing", ""};
    const auto path = logs / ("rank-" + std::to_string(r) + ".status.json");
    try {
      auto j = nlohmann::json::parse(read_file(path.string()));
      o.state = j.value("state", "unknown");
      o.error = j.value("error", "");
    } catch (const std::exception&) {
    }
    out.push_back(o);
  }
  return out;
}

// "rank 1 (pid 4242 on vm)" from RUN_DIR/workers.json, or "rank 1" when it has no entry.
std::string describe_rank(const fs::path& run_dir, int rank) {
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

int run_job(const Config& config, const RunOptions& options) {
  auto log = logging::get("orchestrator");
  check_executable(config);
  const auto plan = build_plan(config);
  const std::string worker = find_worker(options.worker_path);

  const fs::path run_dir = fs::absolute(options.run_dir.empty() ? default_run_dir() : options.run_dir);
  fs::create_directories(run_dir / "logs");
  fs::create_directories(run_dir / "checkpoints");
  // A run directory may be reused to resume; stale statuses of the last attempt must not count.
  for (int r = 0; r < static_cast<int>(plan.mesh().world_size()); ++r) {
    fs::remove(run_dir / "logs" / ("rank-" + std::to_string(r) + ".status.json"));
  }
  const std::string yaml = to_yaml(config);
  write_file_atomic((run_dir / "config.yaml").string(), yaml);
  write_file_atomic((run_dir / "plan.pb").string(), plan.SerializeAsString());
  write_file_atomic((run_dir / "plan.json").string(), plan_to_json(plan, true).dump(2) + "\n");

  std::fprintf(stderr, "rondo: effective config (saved as %s):\n%s\n", (run_dir / "config.yaml").c_str(),
               yaml.c_str());
  std::fprintf(stderr, "%s", plan_summary(plan).c_str());

  MpirunOptions mo;
  mo.num_ranks = static_cast<int>(plan.mesh().world_size());
  mo.worker = worker;
  mo.run_dir = run_dir.string();
  mo.extra_args = split_args(config.launch.mpirun_args);
  mo.as_root = ::geteuid() == 0;
  const auto cmd = mpirun_command(mo);
  std::string cmd_text;
  for (const auto& a : cmd) cmd_text += (cmd_text.empty() ? "" : " ") + a;
  ::setenv("RONDO_LOG", "info", 0);
  log->info("launching {} workers: {}", mo.num_ranks, cmd_text);
  append_event(run_dir, {{"event", "launch"}, {"ranks", mo.num_ranks}, {"command", cmd_text}});

  const auto t0 = std::chrono::steady_clock::now();
  const auto result = run_process(cmd, std::chrono::duration<double>(config.launch.timeout_s),
                                  (run_dir / "logs" / "launcher.log").string());
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const auto outcomes = read_outcomes(run_dir / "logs", mo.num_ranks);
  std::vector<RankOutcome> failed, unfinished;
  for (const auto& o : outcomes) {
    if (o.state == "failed")
      failed.push_back(o);
    else if (o.state != "done")
      unfinished.push_back(o);
  }
  if (result.exit_code == 0 && failed.empty() && unfinished.empty()) {
    append_event(run_dir, {{"event", "finished"}, {"seconds", elapsed}});
    log->info("job finished in {:.1f} s; metrics in {}", elapsed, (run_dir / "metrics.jsonl").string());
    return kExitOk;
  }

  std::string reason =
      result.timed_out
          ? "timed out after " + std::to_string(config.launch.timeout_s) + " s (launch.timeout_s)"
      : result.interrupted ? "was interrupted"
                           : "failed (mpirun exit status " + std::to_string(result.exit_code) + ")";
  append_event(run_dir, {{"event", "failed"}, {"reason", reason}, {"seconds", elapsed}});
  std::fprintf(stderr, "rondo: job %s\n", reason.c_str());
  for (const auto& o : failed) {
    std::fprintf(stderr, "rondo: rank %d failed: %s\n       see %s\n", o.rank, o.error.c_str(),
                 (run_dir / "logs" / ("rank-" + std::to_string(o.rank) + ".log")).c_str());
  }
  // A rank that died without a word (killed, or exited before recording a failure): mpirun names it.
  std::optional<RankEnd> ended;
  if (failed.empty()) {
    try {
      ended = parse_mpirun_report(read_file((run_dir / "logs" / "launcher.log").string()));
    } catch (const Error&) {
    }
  }
  if (ended) {
    const std::string who = describe_rank(run_dir, ended->rank);
    append_event(run_dir, {{"event", "rank_ended"}, {"rank", ended->rank}, {"how", ended->how()}});
    std::fprintf(stderr, "rondo: %s %s; the launcher then stopped the other ranks\n       see %s\n",
                 who.c_str(), ended->how().c_str(),
                 (run_dir / "logs" / ("rank-" + std::to_string(ended->rank) + ".log")).c_str());
  } else if (failed.empty()) {
    for (const auto& o : unfinished) {
      std::fprintf(stderr, "rondo: rank %d did not finish (state %s); see %s\n", o.rank, o.state.c_str(),
                   (run_dir / "logs" / ("rank-" + std::to_string(o.rank) + ".log")).c_str());
    }
    std::fprintf(stderr, "rondo: launcher output in %s\n", (run_dir / "logs" / "launcher.log").c_str());
  }
  for (const auto& o : failed) {
    if (o.error.rfind("config error:", 0) == 0) return kExitConfigError;
  }
  return kExitFailure;
}

}  // namespace rondo

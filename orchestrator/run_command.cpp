#include "orchestrator/run_command.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/atomic_file.h"
#include "common/checkpoint_manifest.h"
#include "common/duration_format.h"
#include "common/errors.h"
#include "common/logging.h"
#include "control/control_server.h"
#include "control/job_state.h"
#include "launch/mpirun_command.h"
#include "launch/process_runner.h"
#include "launch/srun_command.h"
#include "orchestrator/attempt_watch.h"
#include "orchestrator/fault_monitor.h"
#include "orchestrator/job_services.h"
#include "orchestrator/plan_builder.h"
#include "orchestrator/plan_views.h"
#include "orchestrator/stage_rebalance.h"
#include "proto/plan_names.h"

namespace rondo {

namespace fs = std::filesystem;

namespace {

std::string default_run_dir() {
  std::time_t now = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof(buf), "runs/%Y%m%d-%H%M%S", std::localtime(&now));
  return buf;
}

}  // namespace

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

namespace {

// What the worker's MoE layers (parallelism/exec/moe_layer.h) run with so far.
void check_moe_executable(const Config& c) {
  const std::string moe = "with model.num_experts " + std::to_string(c.model.num_experts);
  const auto refuse = [&](const char* key, const std::string& what) {
    throw ConfigError(key, moe + ": " + what + " is not built yet");
  };
  if (c.parallel.hdp || c.parallel.context_parallel_size != 1)
    refuse("parallel.context_parallel_size", "context parallelism (and parallel.hdp)");
  if (c.data.chunk_size != 0) refuse("data.chunk_size", "chunked training (set 0)");
  if (c.pipeline.async) refuse("pipeline.async", "the asynchronous pipeline (set false)");
  if (c.pipeline.schedule == "roundpipe" && c.parallel.pipeline_model_parallel_size > 1)
    refuse("pipeline.schedule", "roundpipe's stateless workers");
  if (c.model.recompute_granularity == "full")
    refuse("model.recompute_granularity", "full recomputation (use none or selective)");
  if (c.parallel.expert_model_parallel_size > 1 && c.training.device != "cpu")
    refuse("training.device",
           "expert parallelism on " + c.training.device + " (its all-to-all is host-only)");
}

}  // namespace

void check_executable(const Config& c) {
  const auto& p = c.parallel;
  const std::string why =
      " the worker executes data, pipeline and context parallelism only so far; plan other layouts with "
      "`rondo plan`";
  if (p.tensor_model_parallel_size != 1)
    throw ConfigError("parallel.tensor_model_parallel_size", "must be 1 for `rondo run`:" + why);
  if (p.context_parallel_size != 1 || p.hdp) {
    // Ring attention (parallelism/exec/ring_attention.h) passes float32 blocks between host buffers.
    const std::string cp =
        p.hdp ? std::string("with parallel.hdp")
              : "with parallel.context_parallel_size " + std::to_string(p.context_parallel_size);
    if (c.training.device != "cpu")
      throw ConfigError("training.device", cp + ", the worker runs on cpu so far");
    if (c.data.chunk_size != 0)
      throw ConfigError("data.chunk_size",
                        cp + ": chunked training with context parallelism is not built; set 0");
    if (c.pipeline.async)
      throw ConfigError("pipeline.async", cp + ": the asynchronous pipeline is not built; set false");
    if (c.pipeline.schedule == "roundpipe" && p.pipeline_model_parallel_size > 1)
      throw ConfigError("pipeline.schedule", cp + ": roundpipe's stateless workers are not built for it");
  }
  if (c.model.num_experts > 0) check_moe_executable(c);
  if (c.comms.backend != "mpi")
    throw ConfigError("comms.backend", "the worker drives gradients over mpi only so far");
}

namespace {

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

// srun inside a Slurm allocation (SLURM_JOB_ID) or when told; else mpirun.
bool launches_with_srun(const Config& config) {
  const std::string& launcher = config.launch.launcher;
  return launcher == "srun" || (launcher == "auto" && std::getenv("SLURM_JOB_ID") != nullptr);
}

std::vector<std::string> launch_command(const Config& config, int world, const std::string& worker,
                                        const std::string& run_dir) {
  if (launches_with_srun(config)) {
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
  // A batch system or MCA settings in the environment give mpirun its hosts or its own policy.
  bool placed_by_environment = false;
  for (const char* v : {"PBS_NODEFILE", "LSB_HOSTS", "LSB_MCPU_HOSTS", "OMPI_MCA_hwloc_base_binding_policy",
                        "OMPI_MCA_rmaps_base_mapping_policy", "OMPI_MCA_orte_default_hostfile"}) {
    placed_by_environment = placed_by_environment || std::getenv(v) != nullptr;
  }
  const std::string bind =
      config.launch.bind == "auto" && placed_by_environment ? "none" : config.launch.bind;
  mo.bind_cores_per_rank = mpirun_cores_per_rank(bind, world, static_cast<int>(config.training.num_threads),
                                                 usable_physical_cores(), mo.extra_args);
  return mpirun_command(mo);
}

}  // namespace

namespace {

// Creates the run directory (logs/, checkpoints/), saves config.yaml and plan.json, prints both.
fs::path prepare_run_dir(const Config& config, const plan::Plan& plan, const RunOptions& options) {
  const fs::path run_dir = fs::absolute(options.run_dir.empty() ? default_run_dir() : options.run_dir);
  fs::create_directories(run_dir / "logs");
  fs::create_directories(run_dir / "checkpoints");
  const std::string yaml = to_yaml(config);
  write_file_atomic((run_dir / "config.yaml").string(), yaml);
  write_file_atomic((run_dir / "plan.json").string(), plan_to_json(plan, true).dump(2) + "\n");
  std::fprintf(stderr, "rondo: effective config (saved as %s):\n%s\n", (run_dir / "config.yaml").c_str(),
               yaml.c_str());
  std::fprintf(stderr, "%s", plan_summary(plan).c_str());
  return run_dir;
}

std::string joined(const std::vector<std::string>& args) {
  std::string text;
  for (const auto& a : args) text += (text.empty() ? "" : " ") + a;
  return text;
}

// Adds `links` to comms.avoid_links; false when each was there already.
bool add_avoid_links(Config& config, const std::vector<std::pair<int, int>>& links, int64_t world) {
  auto& avoid = config.comms.avoid_links;
  const auto avoided = parse_avoid_links(avoid, world);
  bool added = false;
  for (const auto& [src, dst] : links) {
    if (std::find(avoided.begin(), avoided.end(), std::pair(src, dst)) != avoided.end()) continue;
    if (!avoid.empty()) avoid += ',';  // appends: GCC 12 warns falsely on a chain of string +
    avoid.append(std::to_string(src)).append(">").append(std::to_string(dst));
    added = true;
  }
  return added;
}

// The gradient groups' rings of a plan (each group's world ranks in ring order).
control::RingOrders gradient_rings(const plan::Plan& plan) {
  control::RingOrders out;
  const auto kind = gradient_group_kind(plan.mesh());
  for (const auto& g : plan.mesh().groups()) {
    if (g.kind() != kind) continue;
    auto* ring = out.add_rings();
    for (uint32_t r : g.ring_size() > 0 ? g.ring() : g.ranks()) ring->add_ranks(static_cast<int32_t>(r));
  }
  return out;
}

// faults.policy replan with workers that can change their rings while running (bound to their
// stages, synchronous): the attempt's ring planner, the attempt's config with the links added.
void plan_rings_live(JobServices& job, const Config& config, const plan::Plan& plan) {
  if (config.faults.policy != "replan" || plan.asynchronous() || plan.stateless_workers()) return;
  const auto world = static_cast<int64_t>(plan.mesh().world_size());
  job.faults.set_ring_planner(
      [config, world](const std::vector<std::pair<int, int>>& links) -> std::optional<control::RingOrders> {
        Config with = config;
        add_avoid_links(with, links, world);
        try {
          return gradient_rings(build_plan(with));
        } catch (const Error& e) {
          logging::get("orchestrator")->warn("no rings around {} slow link(s): {}", links.size(), e.what());
          return std::nullopt;
        }
      });
}

// The links an attempt's rings were changed around while it ran, into the config and plan of any
// later launch (and plan.json).
void absorb_live_rings(JobServices& job, Config& config, plan::Plan& plan) {
  const auto links = job.faults.take_live_links();
  if (links.empty() || !add_avoid_links(config, links, static_cast<int64_t>(plan.mesh().world_size())))
    return;
  plan = build_plan(config);
  write_file_atomic((job.run_dir / "plan.json").string(), plan_to_json(plan, true).dump(2) + "\n");
}

// One launch of the workers, watched until it ends; `remaining` is what launch.timeout_s leaves.
AttemptEnd run_attempt(int attempt, JobServices& job, plan::Plan& plan, const Config& config,
                       const std::string& worker, std::chrono::duration<double> remaining) {
  const auto& run_dir = job.run_dir;
  const int world = static_cast<int>(plan.mesh().world_size());
  const auto cmd = launch_command(config, world, worker, run_dir.string());
  job.state.begin_attempt(attempt, world);
  auto predicted = predicted_rank_compute(config, plan);
  if (job.known_slowness.size() == predicted.size())
    for (size_t r = 0; r < predicted.size(); ++r) predicted[r] *= job.known_slowness[r];
  job.faults.begin_attempt(world, std::move(predicted));
  plan_rings_live(job, config, plan);
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
  job.state.set_phase("running");
  logging::get("orchestrator")
      ->info("launching {} workers with {} (attempt {}): {}", world, cmd.front(), attempt, joined(cmd));
  job.event({{"event", "launch"}, {"attempt", attempt}, {"ranks", world}, {"command", joined(cmd)}});

  AttemptWatch watch(
      job.state, config, run_dir, world, attempt, job.control.address(),
      [&job](nlohmann::json e) { job.event(std::move(e)); }, &job.faults);
  ProcessMonitor monitor;
  monitor.status_line = [&] { return progress_line(job.state, attempt); };
  monitor.should_stop = [&] {
    job.save_state(false);
    return watch.should_stop();
  };
  // The first Ctrl-C (or SIGTERM) stops the job as SIGUSR1 does: each rank checkpoints after its
  // current step and exits, and the same command resumes; a second one stops at once.
  monitor.on_interrupt = [](int signal) { g_stop_requested = signal; };
  const auto result =
      run_process(cmd, remaining, (run_dir / "logs" / "launcher.log").string(), true, monitor);
  watch.finish();
  const auto end = judge_attempt(run_dir, world, result, watch.ended_by(), job.state, config);
  // A rank the launcher saw die first, the watch having found nothing before: a crash.
  if (!end.ok && end.rank_end && watch.ended_by().empty() && !result.stopped) {
    job.faults.judge_ended(end.rank_end->rank, end.rank_end->how(), job.state.last_step());
  }
  for (const auto& dump : job.state.flights()) {
    job.event({{"event", "flight_dump"},
               {"attempt", attempt},
               {"rank", dump.rank()},
               {"records", dump.records_size()}});
  }
  return end;
}

// The step of the run's latest checkpoint, 0 when there is none (or it cannot be read).
int64_t latest_checkpoint(const JobServices& job) {
  try {
    return latest_checkpoint_step((job.run_dir / "checkpoints").string()).value_or(0);
  } catch (const Error&) {
    return 0;
  }
}

// Reports a failed attempt; true when a restart from the latest checkpoint follows.
bool restart_after(int attempt, const AttemptEnd& end, JobServices& job, const Config& config) {
  std::fprintf(stderr, "rondo: attempt %d: %s\n", attempt, end.reason.c_str());
  if (end.rank_end) {
    job.event({{"event", "rank_ended"},
               {"attempt", attempt},
               {"rank", end.rank_end->rank},
               {"how", end.rank_end->how()}});
  }
  job.event({{"event", "attempt_failed"},
             {"attempt", attempt},
             {"reason", end.reason},
             {"restartable", end.restartable}});
  if (!end.restartable || attempt >= config.launch.max_restarts) return false;
  const int64_t latest = latest_checkpoint(job);
  job.state.set_phase("restarting");
  job.state.count_restart();
  std::fprintf(
      stderr, "rondo: restarting (%d of launch.max_restarts %lld) from %s\n", attempt + 1,
      static_cast<long long>(config.launch.max_restarts),
      latest > 0 ? ("checkpoint step-" + std::to_string(latest)).c_str() : "the start (no checkpoint yet)");
  job.event({{"event", "restart"}, {"attempt", attempt + 1}, {"from_step", latest}});
  return true;
}

// faults.policy replan: when the attempt stopped for a slow link, the config and plan of the next
// one, with the link in comms.avoid_links; true when the job goes on at once from the checkpoint.
bool replan_around_slow_links(int attempt, JobServices& job, Config& config, plan::Plan& plan) {
  const auto links = job.faults.take_replan_links();
  if (links.empty()) return false;
  // Already planned around: nothing new to gain from a relaunch.
  if (!add_avoid_links(config, links, static_cast<int64_t>(plan.mesh().world_size()))) return false;
  const auto& avoid = config.comms.avoid_links;
  plan = build_plan(config);
  write_file_atomic((job.run_dir / "plan.json").string(), plan_to_json(plan, true).dump(2) + "\n");
  std::fprintf(stderr,
               "rondo: re-planned around slow links (faults.policy replan): comms.avoid_links=%s; "
               "resuming from step %lld\n%s",
               avoid.c_str(), static_cast<long long>(job.state.last_step()), plan_summary(plan).c_str());
  job.event({{"event", "replan"},
             {"attempt", attempt + 1},
             {"avoid_links", avoid},
             {"from_step", job.state.last_step()}});
  return true;
}

// The next attempt's config and plan without `faulty` (faults.policy restart: the ranks this one
// named slow, hung or crashed; replan: slow ranks no lighter stage helps) -- without their hosts
// when the job spans several and srun can exclude them, else with that many ranks fewer (the
// largest world the config is valid at; the global batch, so the data and the losses, unchanged).
// False when nothing fits.
bool leave_out_ranks(int attempt, JobServices& job, Config& config, plan::Plan& plan,
                     const std::set<int>& faulty) {
  const int64_t world = plan.mesh().world_size();
  std::vector<std::string> hosts;
  for (int r = 0; r < world; ++r) {
    const auto reg = job.state.registration(r);
    hosts.push_back(reg ? reg->host() : "");
  }
  const auto [removed, excluded] = leave_out(faulty, hosts, launches_with_srun(config));
  const int64_t next = largest_valid_world(config, world - removed);
  const nlohmann::json ranks(faulty);
  if (next == 0) {
    std::fprintf(stderr, "rondo: no smaller world fits the config; the restart keeps %lld ranks\n",
                 static_cast<long long>(world));
    return false;
  }
  if (!excluded.empty()) config.launch.srun_args.append(" --exclude=").append(excluded);
  config = with_world(config, next);
  plan = build_plan(config);
  write_file_atomic((job.run_dir / "plan.json").string(), plan_to_json(plan, true).dump(2) + "\n");
  const int64_t from = latest_checkpoint(job);
  std::fprintf(stderr,
               "rondo: faults.policy %s: leaving out rank(s) %s%s; %lld ranks (were %lld), data-parallel "
               "size %lld, resuming from step %lld\n",
               config.faults.policy.c_str(), ranks.dump().c_str(),
               excluded.empty() ? "" : (" and host(s) " + excluded).c_str(), static_cast<long long>(next),
               static_cast<long long>(world), static_cast<long long>(plan.mesh().dp()),
               static_cast<long long>(from));
  job.event({{"event", "restart_without"},
             {"attempt", attempt + 1},
             {"ranks", ranks},
             {"excluded_hosts", excluded},
             {"world_size", next},
             {"from_step", from}});
  return true;
}

bool leave_out_faulty_ranks(int attempt, JobServices& job, Config& config, plan::Plan& plan) {
  const auto faulty = job.faults.take_faulty_ranks();
  return config.faults.policy == "restart" && !faulty.empty() &&
         leave_out_ranks(attempt, job, config, plan, faulty);
}

// faults.policy replan: when the attempt stopped for slow ranks, the next one's config and plan
// with lighter pipeline stages for them (orchestrator/stage_rebalance.h), resumed from the stop's
// checkpoint, which the workers load by layer name; where no partition helps, they are left out.
bool replan_around_slow_ranks(int attempt, JobServices& job, Config& config, plan::Plan& plan) {
  const auto slow = job.faults.take_replan_ranks();
  if (slow.empty()) return false;
  const nlohmann::json ranks(slow);
  auto rebalance = rebalance_stages(config, plan, job.faults.recent_compute_s(), slow);
  if (!rebalance.partition.empty()) {
    Config next = config;
    next.pipeline.stage_partition = rebalance.partition;
    try {
      plan = build_plan(next);
      config = std::move(next);
    } catch (const ConfigError& e) {
      rebalance.why_not = e.what();
      rebalance.partition.clear();
    }
  }
  if (rebalance.partition.empty()) {
    std::fprintf(stderr, "rondo: faults.policy replan: no lighter stages for rank(s) %s: %s\n",
                 ranks.dump().c_str(), rebalance.why_not.c_str());
    job.event({{"event", "replan_declined"}, {"ranks", ranks}, {"reason", rebalance.why_not}});
    return leave_out_ranks(attempt, job, config, plan, slow);
  }
  write_file_atomic((job.run_dir / "plan.json").string(), plan_to_json(plan, true).dump(2) + "\n");
  job.known_slowness = rebalance.factors;
  const int64_t from = latest_checkpoint(job);
  std::string factors;
  for (int r : slow) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%s%d: %.2fx", factors.empty() ? "" : ", ", r,
                  rebalance.factors.at(static_cast<size_t>(r)));
    factors += buf;
  }
  std::fprintf(stderr,
               "rondo: re-planned around slow rank(s) %s (faults.policy replan; slower than their stages "
               "predict: %s): pipeline.stage_partition=%s; resuming from step %lld\n%s",
               ranks.dump().c_str(), factors.c_str(), rebalance.partition.c_str(),
               static_cast<long long>(from), plan_summary(plan).c_str());
  job.event({{"event", "replan"},
             {"attempt", attempt + 1},
             {"ranks", ranks},
             {"factors", rebalance.factors},
             {"stage_partition", rebalance.partition},
             {"from_step", from}});
  return true;
}

// The job's last phase (stopped early with a checkpoint, finished, failed) and its event.
void record_job_end(const AttemptEnd& end, JobServices& job, int64_t train_iters, double elapsed) {
  auto& state = job.state;
  if (end.ok && state.last_step() < train_iters) {
    state.set_phase("stopped");
    job.event({{"event", "stopped"}, {"step", state.last_step()}, {"seconds", elapsed}});
    std::fprintf(stderr,
                 "rondo: stopped after step %lld of %lld with a checkpoint; the same command resumes it\n",
                 static_cast<long long>(state.last_step()), static_cast<long long>(train_iters));
  } else if (end.ok) {
    state.set_phase("finished");
    job.event({{"event", "finished"}, {"seconds", elapsed}});
    logging::get("orchestrator")
        ->info("job finished in {:.1f} s; metrics in {}", elapsed, (job.run_dir / "metrics.jsonl").string());
  } else {
    state.set_phase("failed");
    job.event({{"event", "failed"}, {"reason", end.reason}, {"seconds", elapsed}});
    std::fprintf(stderr, "rondo: job failed: %s\n", end.reason.c_str());
  }
  job.save_state(true);
}

}  // namespace

int run_job(const Config& config, const RunOptions& options) {
  check_executable(config);
  auto plan = build_plan(config);
  const std::string worker = find_worker(options.worker_path);
  const fs::path run_dir = prepare_run_dir(config, plan, options);
  JobServices job(config, plan, run_dir, options);
  prepare_launch(job.control, job.token);
  const auto t0 = std::chrono::steady_clock::now();
  AttemptEnd end;
  // faults.policy replan adds the slow links it stopped for; restart leaves out faulty ranks.
  Config current = config;
  for (int attempt = 0;; ++attempt) {
    const auto remaining =
        std::chrono::duration<double>(config.launch.timeout_s) - (std::chrono::steady_clock::now() - t0);
    end = run_attempt(attempt, job, plan, current, worker, remaining);
    absorb_live_rings(job, current, plan);
    // Stopped early, for a fault rather than by a signal (SIGINT, SIGTERM, SIGUSR1): go on at once.
    const bool go_on = end.ok && g_stop_requested == 0 &&
                       job.state.last_step() < static_cast<int64_t>(plan.training().train_iters());
    if (go_on && replan_around_slow_links(attempt, job, current, plan)) continue;
    if (go_on && replan_around_slow_ranks(attempt, job, current, plan)) continue;
    if (go_on && leave_out_faulty_ranks(attempt, job, current, plan)) continue;
    if (end.ok || !restart_after(attempt, end, job, current)) break;
    leave_out_faulty_ranks(attempt, job, current, plan);
  }
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  record_job_end(end, job, static_cast<int64_t>(plan.training().train_iters()), elapsed);
  if (job.dashboard && options.linger_s > 0) {
    std::fprintf(stderr, "rondo: dashboard stays up for %.0f s\n", options.linger_s);
    std::this_thread::sleep_for(std::chrono::duration<double>(options.linger_s));
  }
  return end.ok ? kExitOk : end.exit_code;
}

}  // namespace rondo

#include "orchestrator/attempt_watch.h"

#include <algorithm>
#include <csignal>
#include <string>
#include <utility>
#include <vector>

#include <google/protobuf/util/json_util.h>

#include "common/atomic_file.h"
#include "common/duration_format.h"
#include "common/logging.h"

namespace rondo {

namespace fs = std::filesystem;

std::atomic<int> g_stop_requested{0};

namespace {

// logs/rank-K.status.json (protobuf JSON of report.WorkerStatus), or nullopt.
std::optional<report::WorkerStatus> read_status(const fs::path& path) {
  try {
    report::WorkerStatus st;
    if (google::protobuf::util::JsonStringToMessage(read_file(path.string()), &st).ok()) return st;
  } catch (const Error&) {
  }
  return std::nullopt;
}

std::string log_of(const fs::path& run_dir, int rank) {
  return (run_dir / "logs" / ("rank-" + std::to_string(rank) + ".log")).string();
}

}  // namespace

std::string describe_rank(const fs::path& run_dir, int rank, const JobState* state) {
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

AttemptWatch::AttemptWatch(JobState& state, const Config& config, fs::path run_dir, int world, int attempt,
                           std::string control_address, EventSink event, FaultMonitor* faults)
    : state_(state),
      config_(config),
      run_dir_(std::move(run_dir)),
      world_(world),
      attempt_(attempt),
      control_address_(std::move(control_address)),
      event_(std::move(event)),
      faults_(faults) {}

bool AttemptWatch::should_stop() {
  forward_stop_request();
  if (teardown_since_) {
    const bool collected = flights_collected();
    if (silent_rank_ && (collected || JobState::Clock::now() - *teardown_since_ > kHangJudgementWait))
      judge_silent_rank(collected);
    return collected;
  }
  if (!find_failure()) return false;
  logging::get("orchestrator")->error("{}; collecting flight recorders before stopping the job", ended_by_);
  state_.command(control::Command::DUMP_FLIGHT);
  teardown_since_ = JobState::Clock::now();
  return false;
}

void AttemptWatch::forward_stop_request() {
  const int signal = g_stop_requested;
  if (signal == 0 || stop_sent_) return;
  stop_sent_ = true;
  const std::string name = signal == SIGUSR1 ? "SIGUSR1" : signal == SIGTERM ? "SIGTERM" : "SIGINT";
  logging::get("orchestrator")
      ->info("{}: every rank checkpoints after its current step and exits{}", name,
             signal == SIGUSR1 ? "" : " (a second SIGINT/SIGTERM stops at once, without a checkpoint)");
  event_({{"event", "stop_requested"}, {"signal", name}});
  state_.command(control::Command::STOP, 0);  // the step's maxima carry it to every rank
}

bool AttemptWatch::find_failure() {
  const auto& launch = config_.launch;
  const auto failed = state_.failed_statuses();
  auto silent = state_.silent_ranks(std::chrono::duration_cast<JobState::Clock::duration>(
      std::chrono::duration<double>(launch.heartbeat_timeout_s)));
  const bool registration_over =
      std::chrono::steady_clock::now() - start_ > std::chrono::duration<double>(launch.register_timeout_s);
  const auto unregistered = registration_over ? state_.unregistered_ranks() : std::vector<int>{};
  if (!failed.empty()) {
    const auto& f = failed.front();
    ended_by_ = describe_rank(run_dir_, f.rank()) + " failed: " + f.error();
  } else if (!silent.empty()) {
    ended_by_ = describe_rank(run_dir_, silent.front()) + " sent no heartbeat for " +
                shortest_float(launch.heartbeat_timeout_s) +
                " s (launch.heartbeat_timeout_s): hung, stopped or cut off";
    event_({{"event", "rank_silent"}, {"attempt", attempt_}, {"rank", silent.front()}});
    silent_rank_ = silent.front();
  } else if (!unregistered.empty()) {
    std::string ranks;
    for (size_t i = 0; i < unregistered.size() && i < 8; ++i)
      ranks += (i ? ", " : "") + std::to_string(unregistered[i]);
    if (unregistered.size() > 8) ranks += ", ... (" + std::to_string(unregistered.size()) + " in all)";
    ended_by_ = "rank(s) " + ranks + " did not register with the coordinator within " +
                shortest_float(launch.register_timeout_s) +
                " s (launch.register_timeout_s): stuck in start-up, or cannot reach " + control_address_;
    event_({{"event", "ranks_unregistered"}, {"attempt", attempt_}, {"ranks", unregistered}});
    silent.insert(silent.end(), unregistered.begin(), unregistered.end());
  }
  if (ended_by_.empty()) return false;
  for (const auto& f : failed) gone_.insert(f.rank());
  gone_.insert(silent.begin(), silent.end());
  return true;
}

void AttemptWatch::finish() {
  if (silent_rank_) judge_silent_rank(flights_collected());
}

void AttemptWatch::judge_silent_rank(bool flights_in) {
  const int rank = *silent_rank_;
  silent_rank_.reset();
  if (!faults_) return;
  const double silent_s = config_.launch.heartbeat_timeout_s +
                          std::chrono::duration<double>(JobState::Clock::now() - *teardown_since_).count();
  if (!flights_in) logging::get("orchestrator")->info("judging rank {} before every flight dump is in", rank);
  faults_->judge_silent(rank, silent_s, state_.last_step());
}

bool AttemptWatch::flights_collected() const {
  // Every rank that did not fail or fall silent dumped, or the wait is over.
  std::set<int> accounted = gone_;
  for (const auto& f : state_.failed_statuses()) accounted.insert(f.rank());
  for (const auto& d : state_.flights()) accounted.insert(d.rank());
  return static_cast<int>(accounted.size()) >= world_ ||
         JobState::Clock::now() - *teardown_since_ > kFlightCollectionWait;
}

namespace {

std::vector<report::WorkerStatus> read_statuses(const fs::path& run_dir, int world) {
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
  return statuses;
}

// A failed attempt's cause when a restart can help: the rank the launcher names (killed by a signal
// or exiting without a word; the cause even when its peers then failed talking to it), else the
// watch's finding, else the first failed rank.
void name_restartable_cause(AttemptEnd& end, const fs::path& run_dir,
                            const std::vector<report::WorkerStatus>& failed, const std::string& ended_by,
                            const ProcessResult& result, const JobState& state) {
  std::optional<RankEnd> launcher_end;
  try {
    launcher_end = parse_mpirun_report(read_file((run_dir / "logs" / "launcher.log").string()));
  } catch (const Error&) {
  }
  // A rank that exited with status 1 after recording its failure is that failure (the worker's own abort).
  const bool own_abort =
      launcher_end && launcher_end->signal == 0 && launcher_end->exit_code == kExitFailure && !failed.empty();
  if (launcher_end && !own_abort) {
    end.rank_end = launcher_end;
    end.reason = describe_rank(run_dir, launcher_end->rank, &state) + " " + launcher_end->how() +
                 "; the launcher then stopped the other ranks; see " + log_of(run_dir, launcher_end->rank);
  } else if (!ended_by.empty()) {
    end.reason = ended_by;
  } else if (!failed.empty()) {
    const auto& f = failed.front();
    end.reason = describe_rank(run_dir, f.rank(), &state) + " failed: " + f.error() + "; see " +
                 log_of(run_dir, f.rank());
  } else {
    end.reason = "the launcher exited with status " + std::to_string(result.exit_code) +
                 " and no rank recorded why; see " + (run_dir / "logs" / "launcher.log").string();
  }
}

}  // namespace

AttemptEnd judge_attempt(const fs::path& run_dir, int world, const ProcessResult& result,
                         const std::string& ended_by, const JobState& state, const Config& config) {
  AttemptEnd end;
  const auto statuses = read_statuses(run_dir, world);
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
  // Failures a restart would only repeat.
  const auto deterministic = std::find_if(failed.begin(), failed.end(), [](const auto& st) {
    return st.failure() == report::CONFIG_ERROR || st.failure() == report::PLAN_ERROR ||
           st.failure() == report::TRAINING_ERROR;
  });
  if (deterministic != failed.end()) {
    const auto& f = *deterministic;
    end.reason = describe_rank(run_dir, f.rank(), &state) + " failed: " + f.error() + "; see " +
                 log_of(run_dir, f.rank());
    if (f.failure() == report::CONFIG_ERROR) end.exit_code = kExitConfigError;
    return end;
  }
  end.restartable = true;
  name_restartable_cause(end, run_dir, failed, ended_by, result, state);
  return end;
}

}  // namespace rondo

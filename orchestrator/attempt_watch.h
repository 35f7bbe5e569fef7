// One launch attempt of `rondo run`, as the coordinator watches and then judges it.
//
// AttemptWatch is the launcher monitor's stop test, polled while the attempt runs: a rank that
// failed, fell silent (no heartbeat for launch.heartbeat_timeout_s) or never registered ends the
// attempt, but only once the other ranks dumped their flight recorders (they are still alive to do
// so: the launcher has not torn them down yet) or kFlightCollectionWait passed. It also turns
// SIGUSR1 (Slurm's warning before the time limit) into a STOP for every rank.
//
// judge_attempt then decides from the launcher's result, the ranks' typed statuses and the control
// plane how the attempt ended, and whether a restart can help: a dead, hung or cut-off rank, yes; a
// config, plan or training error would fail the same way again.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "control/job_state.h"
#include "launch/launcher_report.h"
#include "launch/process_runner.h"
#include "orchestrator/config.h"
#include "orchestrator/fault_monitor.h"

namespace rondo {

// After a failure, how long the coordinator waits for the other ranks' flight dumps.
constexpr auto kFlightCollectionWait = std::chrono::seconds(10);
// How long a silent rank's verdict waits for them: a hang is named within heartbeat timeout + 2 s.
constexpr auto kHangJudgementWait = std::chrono::milliseconds(1500);

// The signal that asked the job to stop after its current step with a checkpoint (0: none):
// SIGUSR1 (Slurm's warning before the time limit) or the first SIGINT/SIGTERM of `rondo run`.
extern std::atomic<int> g_stop_requested;

// "rank 1 (pid 4242 on vm)" from the registration or RUN_DIR/workers.json, or "rank 1".
std::string describe_rank(const std::filesystem::path& run_dir, int rank, const JobState* state = nullptr);

class AttemptWatch {
 public:
  using EventSink = std::function<void(nlohmann::json)>;
  // `faults` (may be null) judges a silent rank once the others' flight dumps are in, or
  // kHangJudgementWait after the silence was found, whichever comes first.
  AttemptWatch(JobState& state, const Config& config, std::filesystem::path run_dir, int world, int attempt,
               std::string control_address, EventSink event, FaultMonitor* faults = nullptr);

  // True when the attempt should be stopped now.
  bool should_stop();
  // After the attempt: judges a silent rank the launcher's end came too soon for.
  void finish();
  // Why the watch ended the attempt (empty: it did not).
  const std::string& ended_by() const { return ended_by_; }

 private:
  void forward_stop_request();
  // Names the first failed, silent or unregistered rank in ended_by_ and the gone ranks; false if none.
  bool find_failure();
  bool flights_collected() const;
  void judge_silent_rank(bool flights_in);

  JobState& state_;
  const Config& config_;
  std::filesystem::path run_dir_;
  int world_, attempt_;
  std::string control_address_;
  EventSink event_;
  std::string ended_by_;
  std::set<int> gone_;  // the failed or silent ranks: no dump to wait for
  std::optional<JobState::Clock::time_point> teardown_since_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  bool stop_sent_ = false;
  FaultMonitor* faults_;
  std::optional<int> silent_rank_;  // found silent, not judged yet
};

// How one attempt ended, as the coordinator saw it.
struct AttemptEnd {
  bool ok = false;
  bool restartable = false;
  int exit_code = kExitFailure;
  std::string reason;               // for people: which rank, where, how
  std::optional<RankEnd> rank_end;  // the launcher named the rank that ended it
};

AttemptEnd judge_attempt(const std::filesystem::path& run_dir, int world, const ProcessResult& result,
                         const std::string& ended_by, const JobState& state, const Config& config);

}  // namespace rondo

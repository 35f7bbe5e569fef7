// FaultMonitor: fault localisation running live in the coordinator. Every step report the control
// plane takes in is appended to RUN_DIR/timings.jsonl (protobuf JSON, one report a line: what
// `rondo diagnose` replays) and fed to the FaultDetector; its verdicts become JobState faults
// (events.jsonl, the dashboard, /metrics). The attempt watch asks it to judge a silent rank (a hang
// or a crash) and the launcher's account of a dead one (a crash).
//
// Thread-safe: reports arrive on the control plane's threads.
#pragma once

#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/line_appender.h"
#include "control/job_state.h"
#include "faults/fault_detector.h"
#include "orchestrator/config.h"

namespace rondo {

// What this machine can tell of a rank's process: "stopped" (SIGSTOP), "running", "gone", or
// "unknown" when it runs on another host.
std::string local_process_state(int pid, const std::string& host);

DetectorOptions detector_options(const FaultsConfig& faults);

// faults.policy restart: what the next launch leaves out for the ranks named faulty.
struct LeaveOut {
  int64_t ranks = 0;           // how many of the job's ranks
  std::string excluded_hosts;  // comma separated, for srun --exclude; empty: fewer ranks only
};
// `hosts`: each rank's host ("" where unknown). Under srun, on a job spanning several hosts, the
// faulty ranks' hosts go with every rank they held (while another host is left); else the faulty
// ranks only.
LeaveOut leave_out(const std::set<int>& faulty, const std::vector<std::string>& hosts, bool srun);

class FaultMonitor {
 public:
  // `policy`: faults.policy. replan: a slow link between two ranks is planned around once
  // (`avoided`: the links the plan already avoids, comms.avoid_links): the gradients' rings change
  // while the job runs when the attempt's ring planner gives new ones, else the job is asked to
  // stop and relaunch with the link avoided; a slow rank asks the job to stop, to relaunch with
  // lighter stages for it (take_replan_ranks). restart: a slow rank
  // asks the job to stop, and every rank named slow, hung or crashed is left out of the next
  // launch (take_faulty_ranks).
  FaultMonitor(JobState& state, const std::filesystem::path& run_dir, const DetectorOptions& options,
               const std::string& policy = "report", const std::vector<std::pair<int, int>>& avoided = {});

  // The next launch runs `world_size` ranks: a fresh detector (ranks and links are renumbered), no
  // ring planner until set_ring_planner(). `predicted_compute_s`: per rank, its stages' predicted
  // compute in this launch's plan (the detector's slow-stage rule; empty: off).
  void begin_attempt(int world_size, std::vector<double> predicted_compute_s = {});

  // faults.policy replan while the attempt runs: the rings that avoid `links` besides the plan's
  // own avoided ones (every gradient group's world ranks in ring order), or nullopt when this launch
  // cannot change them live (then the job stops and relaunches).
  using RingPlanner =
      std::function<std::optional<control::RingOrders>(const std::vector<std::pair<int, int>>& links)>;
  void set_ring_planner(RingPlanner planner);
  // The links planned around while the attempt ran (its rings changed live) since the last call:
  // for the config of any later launch.
  std::vector<std::pair<int, int>> take_live_links();

  void add_report(const report::StepReport& report);

  // A rank that sent no heartbeat for `silent_s`: a hang when its process is still there (or
  // cannot be seen from here), a crash when it is gone. The evidence names the collectives the
  // other ranks wait in (their flight dumps, when in) against the last its reports completed.
  void judge_silent(int rank, double silent_s, int64_t step);
  // The launcher saw rank `rank` end (`how`: "was killed by signal 9", ...) before the job did.
  void judge_ended(int rank, const std::string& how, int64_t step);

  // faults.policy replan: the links (sender, receiver) that asked the job to stop since the last
  // call, to be avoided by the next attempt's plan.
  std::vector<std::pair<int, int>> take_replan_links();
  // faults.policy restart: the ranks named slow, hung or crashed since the last call.
  std::set<int> take_faulty_ranks();
  // faults.policy replan: the ranks named slow since the last call, to be given lighter pipeline
  // stages (or, where that cannot be, left out as under restart).
  std::set<int> take_replan_ranks();
  // Per rank, its mean forward + backward seconds over its last faults.window step reports (0:
  // none yet): how slow it computes.
  std::vector<double> recent_compute_s() const;

 private:
  nlohmann::json waiting_evidence(int rank) const;
  void act_on(const Verdict& v);
  void request_stop(const nlohmann::json& event);  // the job checkpoints after its step and stops
  // Sends every rank new rings avoiding `link` too; false when the attempt cannot change them live.
  bool replan_rings(std::pair<int, int> link);

  JobState& state_;
  std::unique_ptr<LineAppender> timings_;
  mutable std::mutex mu_;
  DetectorOptions options_;  // the slow-stage predictions: this attempt's
  FaultDetector detector_;
  const bool replan_, restart_;
  std::vector<std::pair<int, int>> replan_links_;
  std::set<std::pair<int, int>> avoided_;  // planned around, or asked to be
  std::set<int> faulty_ranks_, replan_ranks_;
  std::vector<std::deque<double>> compute_s_;      // per rank, its last reports' forward + backward
  bool stop_requested_ = false;                    // in this attempt
  RingPlanner ring_planner_;                       // this attempt's
  std::vector<std::pair<int, int>> live_links_;    // re-ringed live in this attempt
  std::vector<std::pair<int, int>> untaken_live_;  // the same, until take_live_links()
  uint64_t ring_version_ = 0;                      // SET_RINGS sent in this attempt
};

}  // namespace rondo

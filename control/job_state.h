// JobState: the coordinator's live picture of one job. The control service fills it from any of
// its threads (registrations, heartbeats, step reports, statuses, flight dumps, refused calls);
// the restart loop, the dashboard, /metrics and `rondo status` read it. Every method locks, so
// readers see a consistent snapshot. Memory stays bounded at any world size: per rank the latest
// report only, per step the job's loss and throughput, and a fixed window of per-rank step times.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "proto/control.pb.h"
#include "proto/report.pb.h"

namespace rondo {

class JobState {
 public:
  using Clock = std::chrono::steady_clock;
  // Per-rank step times kept for the heatmap, newest last.
  static constexpr size_t kStepTimeWindow = 60;

  JobState(std::string run_dir, int world_size, int64_t train_iters);

  // A new launch: registrations, heartbeats and statuses of the last one no longer count.
  // `world_size` (when > 0) is the new launch's, when a restart goes on with fewer ranks; the
  // connection times of the last one are dropped then.
  void begin_attempt(int attempt, int world_size = 0);
  int attempt() const;
  int world_size() const { return world_size_.load(); }

  // --- the control service -----------------------------------------------------------------
  // Why a call was refused (counted per reason, and logged by the service).
  enum class Refusal { kToken, kUnknownRank, kStaleAttempt, kMalformed, kOversized };
  static const char* refusal_name(Refusal r);
  void refuse(Refusal reason);
  // Checks rank and attempt of a call; returns the refusal, or nullopt when it may proceed.
  std::optional<Refusal> admit(int rank, int attempt) const;

  void registered(const control::RegisterRequest& request);
  // Records the heartbeat; returns the commands queued for this rank (each delivered once).
  std::vector<control::Command> heartbeat(const control::HeartbeatRequest& request);
  void add_report(const report::StepReport& report);
  void set_status(const report::WorkerStatus& status);
  void add_flight(const report::FlightDump& dump);

  // --- the coordinator ---------------------------------------------------------------------
  // Queues a command for one rank, or for every rank when `rank` < 0. CHECKPOINT_NOW and STOP go
  // to rank 0 only: the trainer agrees on the step through the step's world-wide maxima.
  void command(control::Command::Kind kind, int rank = -1);
  // The same with its payload (SET_RINGS: every rank must have it); the id is set here.
  void command(control::Command command, int rank = -1);
  // Ranks that registered in this attempt and then sent nothing for `timeout`.
  std::vector<int> silent_ranks(Clock::duration timeout) const;
  int registered_count() const;
  // Ranks that have not registered in this attempt.
  std::vector<int> unregistered_ranks() const;
  std::vector<report::WorkerStatus> failed_statuses() const;
  std::vector<report::FlightDump> flights() const;
  std::optional<control::RegisterRequest> registration(int rank) const;
  // The last step any rank reported in this job (all attempts).
  int64_t last_step() const;
  // Job-level state shown to people: "starting", "running", "restarting", "finished", "failed".
  void set_phase(const std::string& phase);
  // Stamps the event's time, passes it to the sink (RUN_DIR/events.jsonl), keeps the latest 200 for
  // the dashboard. Events keep their order: the sink is called under the state's lock.
  void add_event(nlohmann::json event);
  void set_event_sink(std::function<void(const nlohmann::json&)> sink);
  // Called with every step report after the state took it in (outside the state's lock): fault
  // localisation reads them there. Set before the control plane serves.
  void set_report_sink(std::function<void(const report::StepReport&)> sink);
  // A fault verdict (faults/verdict.h's JSON): an event, counted by kind for /metrics, the newest
  // kept for the dashboard, its ranks marked suspect until the next attempt.
  void add_fault(const nlohmann::json& verdict);
  // Each rank's suspicion (0..1, the fault detector's) for rondo_suspect{rank}.
  void set_suspicion(std::vector<double> suspicion);
  void count_restart();
  // Where operators reach the control plane (state.json), and its certificate's fingerprint when TLS.
  void set_control_endpoint(const std::string& address, const std::string& cert_sha256);

  // --- readers -----------------------------------------------------------------------------
  nlohmann::json to_json() const;  // /api/state
  // Just to_json()'s "progress" (step, loss, tokens_per_s, eta_s) and train_iters: cheap at any size.
  nlohmann::json progress() const;
  std::string prometheus() const;  // /metrics, Prometheus text format 0.0.4

 private:
  struct Rank {
    std::optional<control::RegisterRequest> registration;
    Clock::time_point last_seen{};
    int64_t step = 0;
    report::WorkerState state = report::WORKER_STATE_UNSPECIFIED;
    std::optional<report::WorkerStatus> status;
    std::optional<report::StepReport> last_report;
    std::vector<double> step_times;  // the last kStepTimeWindow steps
    int64_t step_times_first = 0;    // step of step_times.front()
    std::vector<control::Command> commands;
    std::optional<report::FlightDump> flight;
  };
  struct StepPoint {
    double loss = 0;
    double tokens = 0;  // the step's tokens
    double step_time_s = 0;
    int64_t time_ns = 0;  // when it ended
    int attempt = 0;
  };
  // Throughput over the steps up to `it` (at most kSmoothingSteps): their tokens over the wall
  // time since the step before them ended. One rank's step time alone jumps from step to step
  // (where it waits moves), the period between step ends does not.
  static constexpr int kSmoothingSteps = 10;
  nlohmann::json progress_locked() const;
  void add_report_locked(const report::StepReport& report);
  // Parts of to_json(), with mu_ held: the loss and throughput series, each rank's entry, the
  // ranks x steps heatmap of step times, the rank x rank matrix of the latest collective times.
  nlohmann::json series_locked() const;
  nlohmann::json ranks_locked() const;
  nlohmann::json step_time_heatmap_locked() const;
  nlohmann::json collective_matrix_locked() const;
  double smoothed_tokens_per_s(std::map<int64_t, StepPoint>::const_iterator it) const;
  struct Link {
    double seconds = 0;  // in the latest step that used it
    uint64_t bytes = 0;
  };

  const std::string run_dir_;
  std::atomic<int> world_size_;
  const int64_t train_iters_;
  const std::chrono::system_clock::time_point started_ = std::chrono::system_clock::now();
  mutable std::mutex mu_;
  int attempt_ = 0;
  std::string phase_ = "starting";
  std::string control_address_, control_cert_sha256_;
  // The rank's entry, or nullptr outside the world (a call admitted before the world shrank).
  Rank* rank_locked(int rank);
  std::vector<Rank> ranks_;
  std::map<int64_t, StepPoint> steps_;     // loss and throughput by step, latest attempt wins
  std::map<int64_t, double> validations_;  // val_loss by the step evaluated, latest attempt wins
  // (op, src, dst) -> the latest step's time on that connection.
  std::map<std::tuple<std::string, int, int>, Link> links_;
  std::map<std::string, uint64_t> refused_;
  uint64_t reports_ = 0, restarts_ = 0, next_command_id_ = 1;
  std::vector<nlohmann::json> events_;
  std::function<void(const nlohmann::json&)> event_sink_;
  std::function<void(const report::StepReport&)> report_sink_;
  std::map<std::string, uint64_t> fault_verdicts_;  // by kind
  std::vector<nlohmann::json> faults_;              // the newest kMaxFaults verdicts
  std::vector<double> suspicion_;
  std::optional<report::HdpStepReport> hdp_;  // parallel.hdp: the newest step's plan (rank 0's)
  int64_t hdp_step_ = 0;
  std::optional<report::MoeStepReport> moe_;  // MoE: the newest step's router load (rank 0's)
  int64_t moe_step_ = 0;
  static constexpr size_t kMaxFaults = 20;
};

}  // namespace rondo

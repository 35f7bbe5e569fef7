#include "orchestrator/fault_monitor.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <map>
#include <utility>

#include <google/protobuf/util/json_util.h>

#include "common/errors.h"
#include "common/logging.h"

namespace rondo {

namespace fs = std::filesystem;

std::string local_process_state(int pid, const std::string& host) {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || host != name || pid <= 0) return "unknown";
  if (::kill(pid, 0) != 0 && errno == ESRCH) return "gone";
  // /proc/PID/stat: "pid (comm) S ...": the state letter follows the command's closing parenthesis.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  if (close == std::string::npos || close + 2 >= text.size()) return "gone";
  const char state = text[close + 2];
  if (state == 'Z' || state == 'X') return "gone";
  return state == 'T' || state == 't' ? "stopped" : "running";
}

DetectorOptions detector_options(const FaultsConfig& f) {
  return DetectorOptions{.slow_rank_share = f.slow_rank_share,
                         .slow_link_factor = f.slow_link_factor,
                         .slow_link_share = f.slow_link_share,
                         .window = static_cast<int>(f.window),
                         .persist = static_cast<int>(f.persist),
                         .slow_stage_factor = f.slow_stage_factor,
                         .predicted_compute_s = {}};
}

LeaveOut leave_out(const std::set<int>& faulty, const std::vector<std::string>& hosts, bool srun) {
  std::map<std::string, int64_t> ranks_on;
  std::set<std::string> faulty_hosts;
  for (size_t r = 0; r < hosts.size(); ++r) {
    if (hosts[r].empty()) continue;
    ++ranks_on[hosts[r]];
    if (faulty.count(static_cast<int>(r))) faulty_hosts.insert(hosts[r]);
  }
  LeaveOut out;
  out.ranks = static_cast<int64_t>(faulty.size());
  // Every faulty rank's host known, and another host left to run on.
  const bool by_host =
      srun && faulty_hosts.size() < ranks_on.size() && std::all_of(faulty.begin(), faulty.end(), [&](int r) {
        return r >= 0 && static_cast<size_t>(r) < hosts.size() && !hosts[static_cast<size_t>(r)].empty();
      });
  if (!by_host) return out;
  out.ranks = 0;
  for (const auto& host : faulty_hosts) {
    out.ranks += ranks_on.at(host);
    out.excluded_hosts.append(out.excluded_hosts.empty() ? "" : ",").append(host);
  }
  return out;
}

FaultMonitor::FaultMonitor(JobState& state, const fs::path& run_dir, const DetectorOptions& options,
                           const std::string& policy, const std::vector<std::pair<int, int>>& avoided)
    : state_(state),
      timings_(std::make_unique<LineAppender>((run_dir / "timings.jsonl").string())),
      options_(options),
      detector_(state.world_size(), options),
      replan_(policy == "replan"),
      restart_(policy == "restart"),
      avoided_(avoided.begin(), avoided.end()) {}

void FaultMonitor::begin_attempt(int world_size, std::vector<double> predicted_compute_s) {
  std::lock_guard lock(mu_);
  options_.predicted_compute_s = std::move(predicted_compute_s);
  stop_requested_ = false;
  ring_planner_ = nullptr;
  live_links_.clear();
  ring_version_ = 0;
  compute_s_.clear();  // another plan: other stages
  detector_.set_predicted_compute(options_.predicted_compute_s);
  if (world_size == detector_.world_size()) return;
  detector_ = FaultDetector(world_size, options_);
  avoided_.clear();  // the links of the old numbering
}

void FaultMonitor::set_ring_planner(RingPlanner planner) {
  std::lock_guard lock(mu_);
  ring_planner_ = std::move(planner);
}

std::vector<std::pair<int, int>> FaultMonitor::take_live_links() {
  std::lock_guard lock(mu_);
  return std::exchange(untaken_live_, {});
}

bool FaultMonitor::replan_rings(std::pair<int, int> link) {
  RingPlanner planner;
  std::vector<std::pair<int, int>> links;
  {
    std::lock_guard lock(mu_);
    planner = ring_planner_;
    links = live_links_;
  }
  links.push_back(link);
  if (!planner) return false;
  auto rings = planner(links);  // a plan build: outside the lock
  if (!rings) return false;
  control::Command command;
  command.set_kind(control::Command::SET_RINGS);
  {
    std::lock_guard lock(mu_);
    rings->set_version(++ring_version_);
    live_links_.push_back(link);
    untaken_live_.push_back(link);
  }
  nlohmann::json event = {{"event", "rings_replanned"},
                          {"link", {link.first, link.second}},
                          {"version", rings->version()},
                          {"rings", nlohmann::json::array()}};
  for (const auto& ring : rings->rings())
    event["rings"].push_back(std::vector<int>(ring.ranks().begin(), ring.ranks().end()));
  *command.mutable_rings() = std::move(*rings);
  state_.command(std::move(command));
  state_.add_event(std::move(event));
  return true;
}

std::vector<std::pair<int, int>> FaultMonitor::take_replan_links() {
  std::lock_guard lock(mu_);
  return std::exchange(replan_links_, {});
}

std::set<int> FaultMonitor::take_faulty_ranks() {
  std::lock_guard lock(mu_);
  return std::exchange(faulty_ranks_, {});
}

std::set<int> FaultMonitor::take_replan_ranks() {
  std::lock_guard lock(mu_);
  return std::exchange(replan_ranks_, {});
}

std::vector<double> FaultMonitor::recent_compute_s() const {
  std::lock_guard lock(mu_);
  std::vector<double> out;
  for (const auto& recent : compute_s_) {
    double sum = 0;
    for (double s : recent) sum += s;
    out.push_back(recent.empty() ? 0.0 : sum / static_cast<double>(recent.size()));
  }
  return out;
}

void FaultMonitor::request_stop(const nlohmann::json& event) {
  {
    std::lock_guard lock(mu_);
    if (std::exchange(stop_requested_, true)) return;
  }
  // Every rank checkpoints after the step the stop reaches it in; the run loop relaunches.
  state_.add_event(event);
  state_.command(control::Command::STOP, 0);
}

void FaultMonitor::act_on(const Verdict& v) {
  if (replan_ && v.kind == FaultKind::kSlowLink && v.link && v.link->first >= 0 && v.link->second >= 0) {
    {
      std::lock_guard lock(mu_);
      if (!avoided_.insert(*v.link).second) return;  // planned around already
    }
    if (replan_rings(*v.link)) return;  // the rings change while the job runs
    {
      std::lock_guard lock(mu_);
      replan_links_.push_back(*v.link);
    }
    request_stop({{"event", "replan_requested"}, {"link", {v.link->first, v.link->second}}});
  }
  if (replan_ && v.kind == FaultKind::kSlowRank) {
    {
      std::lock_guard lock(mu_);
      replan_ranks_.insert(v.ranks.begin(), v.ranks.end());
    }
    request_stop({{"event", "replan_requested"}, {"ranks", v.ranks}});
  }
  if (restart_ && v.kind == FaultKind::kSlowRank) {
    {
      std::lock_guard lock(mu_);
      faulty_ranks_.insert(v.ranks.begin(), v.ranks.end());
    }
    request_stop({{"event", "restart_requested"}, {"ranks", v.ranks}});
  }
}

void FaultMonitor::add_report(const report::StepReport& report) {
  std::string line;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(report, &line, options);
  std::vector<Verdict> verdicts;
  std::vector<double> suspicion;
  {
    std::lock_guard lock(mu_);
    try {
      timings_->append(line);
    } catch (const Error& e) {
      logging::get("faults")->warn("{}", e.what());
    }
    verdicts = detector_.add(report);
    if (report.rank() >= 0 && report.rank() < detector_.world_size()) {
      compute_s_.resize(static_cast<size_t>(detector_.world_size()));
      auto& recent = compute_s_[static_cast<size_t>(report.rank())];
      recent.push_back(report.forward_s() + report.backward_s());
      if (static_cast<int>(recent.size()) > options_.window) recent.pop_front();
    }
    for (int r = 0; r < detector_.world_size(); ++r) suspicion.push_back(detector_.suspicion(r));
  }
  state_.set_suspicion(std::move(suspicion));
  for (const auto& v : verdicts) {
    logging::get("faults")->warn("{} at step {}: {}", fault_kind_name(v.kind), v.step, v.to_json().dump());
    state_.add_fault(v.to_json());
    act_on(v);
  }
}

nlohmann::json FaultMonitor::waiting_evidence(int rank) const {
  nlohmann::json waiting = nlohmann::json::array();
  std::lock_guard lock(mu_);
  for (const auto& dump : state_.flights()) {
    if (dump.rank() == rank) continue;
    for (const auto& r : dump.records()) {
      if (r.completed()) continue;
      nlohmann::json w = {{"rank", dump.rank()},
                          {"op", r.op()},
                          {"group", r.group()},
                          {"group_seq", r.group_seq()},
                          {"waiting_for", {r.waiting_send_peer(), r.waiting_recv_peer()}}};
      if (!r.group().empty() && !is_transfer(r)) {
        const auto last = detector_.last_completed(rank, r.group());
        w["silent_rank_last_completed"] = last ? nlohmann::json(*last) : nlohmann::json(nullptr);
        // Its counter behind the collective the others are in: as far as its reports tell, it
        // never entered it (rather than stalling on a connection after entry).
        w["silent_rank_entered"] = last && *last >= r.group_seq();
      }
      waiting.push_back(std::move(w));
    }
  }
  return waiting;
}

void FaultMonitor::judge_silent(int rank, double silent_s, int64_t step) {
  const auto reg = state_.registration(rank);
  const std::string process = reg ? local_process_state(reg->pid(), reg->host()) : "unknown";
  Verdict v;
  v.kind = process == "gone" ? FaultKind::kCrash : FaultKind::kHang;
  v.ranks = {rank};
  v.step = step;
  v.evidence = {{"silent_s", silent_s}, {"process", process}, {"others_waiting", waiting_evidence(rank)}};
  if (reg) {
    v.evidence["pid"] = reg->pid();
    v.evidence["host"] = reg->host();
  }
  logging::get("faults")->warn("{}: rank {} ({})", fault_kind_name(v.kind), rank, v.evidence.dump());
  state_.add_fault(v.to_json());
  std::lock_guard lock(mu_);
  faulty_ranks_.insert(rank);
}

void FaultMonitor::judge_ended(int rank, const std::string& how, int64_t step) {
  Verdict v;
  v.kind = FaultKind::kCrash;
  v.ranks = {rank};
  v.step = step;
  v.evidence = {{"launcher", how}};
  state_.add_fault(v.to_json());
  std::lock_guard lock(mu_);
  faulty_ranks_.insert(rank);
}

}  // namespace rondo

#include "control/job_state.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include <google/protobuf/util/json_util.h>

namespace rondo {

namespace {

nlohmann::json message_json(const google::protobuf::Message& m) {
  std::string text;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &text, options);
  return nlohmann::json::parse(text, nullptr, false);
}

// A Prometheus sample value: finite numbers as the shortest text, the rest as the format spells them.
std::string prom_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  std::ostringstream ss;
  ss.precision(12);
  ss << v;
  return ss.str();
}

}  // namespace

JobState::JobState(std::string run_dir, int world_size, int64_t train_iters)
    : run_dir_(std::move(run_dir)),
      world_size_(world_size),
      train_iters_(train_iters),
      ranks_(static_cast<size_t>(world_size)) {}

void JobState::begin_attempt(int attempt, int world_size) {
  std::lock_guard lock(mu_);
  attempt_ = attempt;
  if (world_size > 0 && world_size != world_size_) {
    world_size_ = world_size;
    ranks_.resize(static_cast<size_t>(world_size));
    links_.clear();
  }
  for (auto& r : ranks_) {
    r.registration.reset();
    r.status.reset();
    r.commands.clear();
    r.flight.reset();
    r.state = report::STARTING;
  }
  suspicion_.clear();
}

int JobState::attempt() const {
  std::lock_guard lock(mu_);
  return attempt_;
}

const char* JobState::refusal_name(Refusal r) {
  switch (r) {
    case Refusal::kToken:
      return "token";
    case Refusal::kUnknownRank:
      return "unknown_rank";
    case Refusal::kStaleAttempt:
      return "stale_attempt";
    case Refusal::kMalformed:
      return "malformed";
    case Refusal::kOversized:
      return "oversized";
  }
  return "?";
}

void JobState::refuse(Refusal reason) {
  std::lock_guard lock(mu_);
  ++refused_[refusal_name(reason)];
}

std::optional<JobState::Refusal> JobState::admit(int rank, int attempt) const {
  if (rank < 0 || rank >= world_size_) return Refusal::kUnknownRank;
  std::lock_guard lock(mu_);
  if (attempt != attempt_) return Refusal::kStaleAttempt;
  return std::nullopt;
}

JobState::Rank* JobState::rank_locked(int rank) {
  return rank >= 0 && static_cast<size_t>(rank) < ranks_.size() ? &ranks_[static_cast<size_t>(rank)]
                                                                : nullptr;
}

void JobState::registered(const control::RegisterRequest& request) {
  std::lock_guard lock(mu_);
  Rank* found = rank_locked(request.rank());
  if (found == nullptr) return;  // a world that shrank after the call was admitted
  auto& r = *found;
  r.registration = request;
  r.last_seen = Clock::now();
  r.state = report::RUNNING;
}

std::vector<control::Command> JobState::heartbeat(const control::HeartbeatRequest& request) {
  std::lock_guard lock(mu_);
  Rank* found = rank_locked(request.rank());
  if (found == nullptr) return {};
  auto& r = *found;
  r.last_seen = Clock::now();
  r.step = std::max(r.step, request.step());
  if (request.state() != report::WORKER_STATE_UNSPECIFIED) r.state = request.state();
  return std::exchange(r.commands, {});
}

void JobState::add_report(const report::StepReport& report) {
  std::function<void(const report::StepReport&)> sink;
  {
    std::lock_guard lock(mu_);
    add_report_locked(report);
    sink = report_sink_;
  }
  if (sink) sink(report);
}

void JobState::add_report_locked(const report::StepReport& report) {
  Rank* found = rank_locked(report.rank());
  if (found == nullptr) return;
  ++reports_;
  auto& r = *found;
  r.last_seen = Clock::now();
  r.step = report.step();
  // The heatmap window: the last kStepTimeWindow steps' times by step. A restart that went back
  // before the window starts it over; steps past its end slide it (steps never reported stay NaN).
  const int64_t step = report.step(), window = static_cast<int64_t>(kStepTimeWindow);
  if (r.step_times.empty() || step < r.step_times_first) {
    r.step_times.clear();
    r.step_times_first = step;
  }
  if (const int64_t overflow = step - (r.step_times_first + window - 1); overflow > 0) {
    const auto drop =
        static_cast<size_t>(std::min<int64_t>(overflow, static_cast<int64_t>(r.step_times.size())));
    r.step_times.erase(r.step_times.begin(), r.step_times.begin() + static_cast<std::ptrdiff_t>(drop));
    r.step_times_first += overflow;
  }
  const auto index = static_cast<size_t>(step - r.step_times_first);
  if (r.step_times.size() <= index) r.step_times.resize(index + 1, std::nan(""));
  r.step_times[index] = report.step_time_s();
  if (report.has_hdp()) {
    hdp_ = report.hdp();
    hdp_step_ = report.step();
  }
  if (report.has_moe()) {
    moe_ = report.moe();
    moe_step_ = report.step();
  }
  if (report.has_validation()) validations_[report.validation().step()] = report.validation().loss();
  if (report.has_loss()) {
    steps_[report.step()] = {report.loss(), report.tokens_per_s() * report.step_time_s(),
                             report.step_time_s(), report.time_ns(), report.attempt()};
  }
  // Connections: each rank reports the exchanges it took part in, by the peer it sent to.
  std::map<std::tuple<std::string, int, int>, Link> step_links;
  for (const auto& c : report.collectives()) {
    for (const auto& conn : c.connections()) {
      if (conn.send_peer() < 0) continue;
      // A transfer on a channel of its own (ring attention's waits) apart from the pipeline's.
      const bool channel = !c.group().empty() && (c.op() == "send" || c.op() == "recv");
      auto& l = step_links[{channel ? c.group() + "_" + c.op() : c.op(), report.rank(), conn.send_peer()}];
      l.seconds += static_cast<double>(conn.total_ns()) * 1e-9;
      l.bytes += conn.bytes();
    }
  }
  for (auto& [key, link] : step_links) links_[key] = link;
  r.last_report = report;
  r.last_report->clear_collectives();  // only the aggregate above is kept
}

void JobState::set_status(const report::WorkerStatus& status) {
  std::lock_guard lock(mu_);
  Rank* found = rank_locked(status.rank());
  if (found == nullptr) return;
  auto& r = *found;
  r.status = status;
  r.state = status.state();
  r.last_seen = Clock::now();
}

void JobState::add_flight(const report::FlightDump& dump) {
  std::lock_guard lock(mu_);
  if (Rank* r = rank_locked(dump.rank())) r->flight = dump;
}

void JobState::command(control::Command::Kind kind, int rank) {
  control::Command c;
  c.set_kind(kind);
  command(std::move(c), rank);
}

void JobState::command(control::Command command, int rank) {
  std::lock_guard lock(mu_);
  for (int r = 0; r < world_size_; ++r) {
    if (rank >= 0 && r != rank) continue;
    command.set_id(next_command_id_++);
    ranks_[static_cast<size_t>(r)].commands.push_back(command);
  }
}

std::vector<int> JobState::silent_ranks(Clock::duration timeout) const {
  std::lock_guard lock(mu_);
  std::vector<int> out;
  const auto now = Clock::now();
  for (int i = 0; i < world_size_; ++i) {
    const auto& r = ranks_[static_cast<size_t>(i)];
    if (r.registration && r.state == report::RUNNING && now - r.last_seen > timeout) out.push_back(i);
  }
  return out;
}

int JobState::registered_count() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(
      std::count_if(ranks_.begin(), ranks_.end(), [](const Rank& r) { return r.registration.has_value(); }));
}

std::vector<int> JobState::unregistered_ranks() const {
  std::lock_guard lock(mu_);
  std::vector<int> out;
  for (int i = 0; i < world_size_; ++i) {
    if (!ranks_[static_cast<size_t>(i)].registration) out.push_back(i);
  }
  return out;
}

std::vector<report::WorkerStatus> JobState::failed_statuses() const {
  std::lock_guard lock(mu_);
  std::vector<report::WorkerStatus> out;
  for (const auto& r : ranks_) {
    if (r.status && r.status->state() == report::FAILED) out.push_back(*r.status);
  }
  return out;
}

std::vector<report::FlightDump> JobState::flights() const {
  std::lock_guard lock(mu_);
  std::vector<report::FlightDump> out;
  for (const auto& r : ranks_) {
    if (r.flight) out.push_back(*r.flight);
  }
  return out;
}

std::optional<control::RegisterRequest> JobState::registration(int rank) const {
  std::lock_guard lock(mu_);
  if (rank < 0 || rank >= world_size_) return std::nullopt;
  return ranks_[static_cast<size_t>(rank)].registration;
}

int64_t JobState::last_step() const {
  std::lock_guard lock(mu_);
  return steps_.empty() ? 0 : steps_.rbegin()->first;
}

void JobState::set_phase(const std::string& phase) {
  std::lock_guard lock(mu_);
  phase_ = phase;
}

void JobState::add_event(nlohmann::json event) {
  event["time"] = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::lock_guard lock(mu_);
  if (event_sink_) event_sink_(event);
  events_.push_back(std::move(event));
  if (events_.size() > 200) events_.erase(events_.begin());
}

void JobState::set_event_sink(std::function<void(const nlohmann::json&)> sink) {
  std::lock_guard lock(mu_);
  event_sink_ = std::move(sink);
}

void JobState::set_report_sink(std::function<void(const report::StepReport&)> sink) {
  std::lock_guard lock(mu_);
  report_sink_ = std::move(sink);
}

void JobState::add_fault(const nlohmann::json& verdict) {
  {
    std::lock_guard lock(mu_);
    ++fault_verdicts_[verdict.value("kind", std::string("?"))];
    faults_.push_back(verdict);
    if (faults_.size() > kMaxFaults) faults_.erase(faults_.begin());
  }
  add_event(verdict);
}

void JobState::set_suspicion(std::vector<double> suspicion) {
  std::lock_guard lock(mu_);
  suspicion_ = std::move(suspicion);
}

void JobState::set_control_endpoint(const std::string& address, const std::string& cert_sha256) {
  std::lock_guard lock(mu_);
  control_address_ = address;
  control_cert_sha256_ = cert_sha256;
}

void JobState::count_restart() {
  std::lock_guard lock(mu_);
  ++restarts_;
}

double JobState::smoothed_tokens_per_s(std::map<int64_t, StepPoint>::const_iterator it) const {
  double tokens = 0, busy_s = 0;
  const auto last = it;
  for (int n = 0; n < kSmoothingSteps; ++n) {
    tokens += it->second.tokens;
    busy_s += it->second.step_time_s;
    if (it == steps_.begin()) break;
    const auto before = std::prev(it);
    // The wall time since the step before the window ended, when the window is one attempt's
    // consecutive steps; otherwise the steps' own times.
    if (n == kSmoothingSteps - 1 || before->first != it->first - 1 ||
        before->second.attempt != it->second.attempt)
      break;
    it = before;
  }
  double seconds = busy_s;
  if (it != steps_.begin()) {
    const auto before = std::prev(it);
    if (before->first == it->first - 1 && before->second.attempt == last->second.attempt &&
        before->second.time_ns > 0)
      seconds = static_cast<double>(last->second.time_ns - before->second.time_ns) * 1e-9;
  }
  return seconds > 0 ? tokens / seconds : 0.0;
}

nlohmann::json JobState::progress() const {
  std::lock_guard lock(mu_);
  nlohmann::json j = progress_locked();
  j["train_iters"] = train_iters_;
  return j;
}

nlohmann::json JobState::progress_locked() const {
  // The newest step, its loss, and throughput smoothed over the last steps.
  nlohmann::json progress;
  progress["step"] = steps_.empty() ? 0 : steps_.rbegin()->first;
  if (!steps_.empty()) {
    const auto newest = std::prev(steps_.end());
    progress["loss"] = newest->second.loss;
    const double tps = smoothed_tokens_per_s(newest);
    if (tps > 0 && newest->second.tokens > 0) {
      progress["tokens_per_s"] = tps;
      progress["eta_s"] = newest->second.tokens / tps * static_cast<double>(train_iters_ - newest->first);
    }
  }
  if (!validations_.empty()) {
    progress["val_loss"] = validations_.rbegin()->second;
    progress["val_step"] = validations_.rbegin()->first;
  }
  return progress;
}

nlohmann::json JobState::to_json() const {
  std::lock_guard lock(mu_);
  nlohmann::json j;
  j["run_dir"] = run_dir_;
  j["phase"] = phase_;
  j["control_address"] = control_address_;
  if (!control_cert_sha256_.empty()) j["control_cert_sha256"] = control_cert_sha256_;
  j["attempt"] = attempt_;
  j["world_size"] = world_size_.load();
  j["train_iters"] = train_iters_;
  j["restarts"] = restarts_;
  j["reports"] = reports_;
  j["uptime_s"] = std::chrono::duration<double>(std::chrono::system_clock::now() - started_).count();
  auto& refused = j["refused_calls"] = nlohmann::json::object();
  for (const auto& [reason, n] : refused_) refused[reason] = n;
  j["progress"] = progress_locked();
  j["series"] = series_locked();
  j["ranks"] = ranks_locked();
  j["step_time_heatmap"] = step_time_heatmap_locked();
  j["collective_matrix"] = collective_matrix_locked();
  j["events"] = events_;
  j["faults"] = faults_;
  j["suspicion"] = suspicion_;
  if (hdp_) {
    j["hdp"] = message_json(*hdp_);
    j["hdp"]["step"] = hdp_step_;
  }
  if (moe_) {
    j["moe"] = message_json(*moe_);
    j["moe"]["step"] = moe_step_;
  }
  return j;
}

nlohmann::json JobState::series_locked() const {
  nlohmann::json series;
  series["step"] = nlohmann::json::array();
  series["loss"] = nlohmann::json::array();
  series["tokens_per_s"] = nlohmann::json::array();
  // At most ~1,000 points: every k-th step, always the newest.
  const size_t stride = std::max<size_t>(1, steps_.size() / 1000);
  size_t i = 0;
  for (auto it = steps_.begin(); it != steps_.end(); ++it) {
    if (i++ % stride != 0 && std::next(it) != steps_.end()) continue;
    series["step"].push_back(it->first);
    series["loss"].push_back(it->second.loss);
    series["tokens_per_s"].push_back(smoothed_tokens_per_s(it));
  }
  // Evaluations are few (every training.eval_interval steps): all of them.
  series["val_step"] = nlohmann::json::array();
  series["val_loss"] = nlohmann::json::array();
  for (const auto& [step, loss] : validations_) {
    series["val_step"].push_back(step);
    series["val_loss"].push_back(loss);
  }
  return series;
}

nlohmann::json JobState::ranks_locked() const {
  auto ranks = nlohmann::json::array();
  const auto now = Clock::now();
  for (int k = 0; k < world_size_; ++k) {
    const auto& r = ranks_[static_cast<size_t>(k)];
    nlohmann::json e = {{"rank", k}, {"step", r.step}, {"state", report::WorkerState_Name(r.state)}};
    if (r.registration) {
      e["host"] = r.registration->host();
      e["pid"] = r.registration->pid();
      e["seconds_since_heard"] = std::chrono::duration<double>(now - r.last_seen).count();
    }
    if (r.status) e["status"] = message_json(*r.status);
    if (r.last_report) e["last_report"] = message_json(*r.last_report);
    ranks.push_back(std::move(e));
  }
  return ranks;
}

// Ranks x the last steps' times (null: not reported). Only for worlds a page can draw.
nlohmann::json JobState::step_time_heatmap_locked() const {
  int64_t first = INT64_MAX, last = 0;
  for (const auto& r : ranks_) {
    if (r.step_times.empty()) continue;
    first = std::min(first, r.step_times_first);
    last = std::max(last, r.step_times_first + static_cast<int64_t>(r.step_times.size()) - 1);
  }
  nlohmann::json heat;
  heat["first_step"] = first == INT64_MAX ? 0 : first;
  heat["rows"] = nlohmann::json::array();
  if (world_size_ > 256 || first == INT64_MAX) return heat;
  if (last - first + 1 > static_cast<int64_t>(kStepTimeWindow)) first = last - kStepTimeWindow + 1;
  heat["first_step"] = first;
  for (const auto& r : ranks_) {
    nlohmann::json row = nlohmann::json::array();
    for (int64_t s = first; s <= last; ++s) {
      const int64_t idx = s - r.step_times_first;
      if (idx < 0 || idx >= static_cast<int64_t>(r.step_times.size()) ||
          std::isnan(r.step_times[static_cast<size_t>(idx)]))
        row.push_back(nullptr);
      else
        row.push_back(r.step_times[static_cast<size_t>(idx)]);
    }
    heat["rows"].push_back(std::move(row));
  }
  return heat;
}

// The latest step's time on each connection, summed over ops.
nlohmann::json JobState::collective_matrix_locked() const {
  if (world_size_ > 256) return nlohmann::json::array();
  std::vector<std::vector<double>> m(static_cast<size_t>(world_size_),
                                     std::vector<double>(static_cast<size_t>(world_size_), 0.0));
  for (const auto& [key, link] : links_) {
    const auto& [op, src, dst] = key;
    if (dst < world_size_) m[static_cast<size_t>(src)][static_cast<size_t>(dst)] += link.seconds;
  }
  return m;
}

std::string JobState::prometheus() const {
  std::lock_guard lock(mu_);
  std::ostringstream out;
  const auto metric = [&](const char* name, const char* type, const char* help) {
    out << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
  };
  metric("rondo_up", "gauge", "1 while the coordinator serves this job.");
  out << "rondo_up 1\n";
  metric("rondo_world_size", "gauge", "Ranks in the job.");
  out << "rondo_world_size " << world_size_.load() << "\n";
  metric("rondo_step", "gauge", "The newest step any rank reported.");
  out << "rondo_step " << (steps_.empty() ? 0 : steps_.rbegin()->first) << "\n";
  metric("rondo_train_iters", "gauge", "Steps the job trains.");
  out << "rondo_train_iters " << train_iters_ << "\n";
  if (!steps_.empty()) {
    metric("rondo_loss", "gauge", "Training loss of the newest step.");
    out << "rondo_loss " << prom_value(steps_.rbegin()->second.loss) << "\n";
    metric("rondo_tokens_per_second", "gauge", "Training throughput over the newest steps.");
    out << "rondo_tokens_per_second " << prom_value(smoothed_tokens_per_s(std::prev(steps_.end()))) << "\n";
  }
  if (!validations_.empty()) {
    metric("rondo_val_loss", "gauge", "Validation loss of the newest evaluation (training.eval_interval).");
    out << "rondo_val_loss " << prom_value(validations_.rbegin()->second) << "\n";
    metric("rondo_val_step", "gauge", "The step whose weights the newest evaluation measured.");
    out << "rondo_val_step " << validations_.rbegin()->first << "\n";
  }
  metric("rondo_step_time_seconds", "gauge", "Each rank's time for its newest step.");
  for (int k = 0; k < world_size_; ++k) {
    const auto& r = ranks_[static_cast<size_t>(k)];
    if (r.last_report) {
      out << "rondo_step_time_seconds{rank=\"" << k << "\"} " << prom_value(r.last_report->step_time_s())
          << "\n";
    }
  }
  metric("rondo_rank_up", "gauge", "1 when the rank registered in this attempt and has not failed.");
  for (int k = 0; k < world_size_; ++k) {
    const auto& r = ranks_[static_cast<size_t>(k)];
    out << "rondo_rank_up{rank=\"" << k << "\"} " << (r.registration && r.state != report::FAILED ? 1 : 0)
        << "\n";
  }
  metric("rondo_collective_seconds", "gauge",
         "Time on one connection (src sends to dst) in the newest step that used it.");
  for (const auto& [key, link] : links_) {
    const auto& [op, src, dst] = key;
    out << "rondo_collective_seconds{op=\"" << op << "\",src=\"" << src << "\",dst=\"" << dst << "\"} "
        << prom_value(link.seconds) << "\n";
  }
  metric("rondo_fault_verdicts_total", "counter", "Fault verdicts reached (events.jsonl), by kind.");
  for (const char* kind : {"slow_rank", "slow_link", "hang", "crash"}) {
    const auto it = fault_verdicts_.find(kind);
    out << "rondo_fault_verdicts_total{kind=\"" << kind << "\"} "
        << (it == fault_verdicts_.end() ? 0 : it->second) << "\n";
  }
  metric(
      "rondo_suspect", "gauge",
      "Share of the fault detector's recent steps in which the rank was a slow-rank suspect (kept the others "
      "waiting, or computed slower than its stages predict against them) (0..1).");
  for (int k = 0; k < world_size_; ++k) {
    const double v = static_cast<size_t>(k) < suspicion_.size() ? suspicion_[static_cast<size_t>(k)] : 0.0;
    out << "rondo_suspect{rank=\"" << k << "\"} " << prom_value(v) << "\n";
  }
  metric("rondo_restarts_total", "counter", "Relaunches after a failed attempt.");
  out << "rondo_restarts_total " << restarts_ << "\n";
  metric("rondo_reports_total", "counter", "Step reports received.");
  out << "rondo_reports_total " << reports_ << "\n";
  metric("rondo_rejected_calls_total", "counter", "Control-plane calls refused, by reason.");
  for (const auto r : {Refusal::kToken, Refusal::kUnknownRank, Refusal::kStaleAttempt, Refusal::kMalformed,
                       Refusal::kOversized}) {
    const auto it = refused_.find(refusal_name(r));
    out << "rondo_rejected_calls_total{reason=\"" << refusal_name(r) << "\"} "
        << (it == refused_.end() ? 0 : it->second) << "\n";
  }
  return out.str();
}

}  // namespace rondo

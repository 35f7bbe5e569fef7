#include "faults/fault_detector.h"

#include <algorithm>
#include <numeric>

namespace rondo {

namespace {

constexpr int kRankKey = -2;  // SuspectKey{rank, kRankKey} is a rank
constexpr int kNodeKey = -3;  // SuspectKey{rank, kNodeKey}: the network of the rank's node; else a link
// Transfers this small are latency, not bandwidth: a link's typical rate comes from larger ones
// when it has any.
constexpr uint64_t kRateMinBytes = 64 << 10;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  const auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  if (v.size() % 2 == 1) return *mid;
  return (*mid + *std::max_element(v.begin(), mid)) / 2;
}

}  // namespace

FaultDetector::FaultDetector(int world_size, DetectorOptions options)
    : world_size_(world_size), options_(options) {}

void FaultDetector::reset(int attempt) {
  attempt_ = attempt;
  first_step_ = -1;
  lineup_ = CollectiveLineup();
  transfers_ = TransferLineup();
  hop_baseline_.clear();
  open_.clear();
  suspects_.clear();
  last_completed_.clear();
  newest_judged_ = -1;
}

std::vector<Verdict> FaultDetector::add(const report::StepReport& report) {
  if (report.rank() < 0 || report.rank() >= world_size_) return {};
  if (report.attempt() < attempt_) return {};  // a late report of an attempt already over
  if (report.attempt() > attempt_) reset(report.attempt());
  if (first_step_ < 0 || report.step() < first_step_) first_step_ = report.step();
  for (const auto& r : report.collectives()) {
    if (r.group().empty() || is_transfer(r) || !r.completed()) continue;
    auto& last = last_completed_[{report.rank(), r.group()}];
    last = std::max(last, r.group_seq());
  }
  if (report.step() > newest_judged_) {
    auto& s = open_[report.step()];
    ++s.reports;
    s.step_times.push_back(report.step_time_s());
    s.run_queue_s.resize(static_cast<size_t>(world_size_), 0.0);
    s.run_queue_s[static_cast<size_t>(report.rank())] = report.run_queue_wait_s();
    s.compute_s.resize(static_cast<size_t>(world_size_), 0.0);
    s.compute_s[static_cast<size_t>(report.rank())] = report.forward_s() + report.backward_s();
  }
  for (const auto& c : lineup_.add(report)) absorb(c);
  for (const auto& t : transfers_.add(report)) absorb(t);
  lineup_.expire(report.step() - 2 * kJudgeAfterSteps);
  return judge_ready(report.step());
}

std::vector<Verdict> FaultDetector::finish() { return judge_ready(std::numeric_limits<int64_t>::max()); }

void FaultDetector::absorb(const LinedUpCollective& c) {
  if (c.step <= newest_judged_) return;  // its step was judged without it
  auto& s = open_[c.step];
  const auto n = static_cast<size_t>(world_size_);
  if (s.blame_s.empty()) s.blame_s.assign(n, 0.0), s.wait_s.assign(n, 0.0);
  const auto a = arrivals(c);
  if (a.latest >= 0 && a.latest < world_size_) s.blame_s[static_cast<size_t>(a.latest)] += a.blame_s;
  for (const auto& [rank, waited] : a.waited_s) {
    if (rank >= 0 && rank < world_size_) s.wait_s[static_cast<size_t>(rank)] += waited;
  }
  for (const auto& t : link_transfers(c)) s.links[{t.src, t.dst}].push_back(t);
}

void FaultDetector::absorb(const MatchedTransfer& t) {
  if (t.step <= newest_judged_ || t.src < 0 || t.src >= world_size_ || t.dst < 0 || t.dst >= world_size_)
    return;
  auto& s = open_[t.step];
  const auto n = static_cast<size_t>(world_size_);
  if (s.blame_s.empty()) s.blame_s.assign(n, 0.0), s.wait_s.assign(n, 0.0);
  s.pipeline_late_s[{t.src, t.dst}] += t.sender_late_s;
  if (t.link_s >= 0) s.links[{t.src, t.dst}].push_back({t.src, t.dst, t.link_s, t.bytes});
}

std::vector<Verdict> FaultDetector::judge_ready(int64_t newest_step) {
  std::vector<Verdict> verdicts;
  while (!open_.empty()) {
    auto it = open_.begin();
    const bool all_in = it->second.reports >= world_size_;
    if (!all_in && newest_step - it->first < kJudgeAfterSteps) break;
    auto found = judge(it->first, it->second);
    verdicts.insert(verdicts.end(), found.begin(), found.end());
    newest_judged_ = it->first;
    open_.erase(it);
  }
  return verdicts;
}

std::vector<Verdict> FaultDetector::judge(int64_t step, OpenStep& s) {
  const double step_time = median(s.step_times);
  if (step_time <= 0 || step < first_step_ + kWarmupSteps) return {};
  if (s.blame_s.empty()) s.blame_s.assign(static_cast<size_t>(world_size_), 0.0), s.wait_s = s.blame_s;
  ++judged_;
  blame_pipeline_hops(s);
  return update_suspects(step, suspects_of(s, step_time));
}

void FaultDetector::blame_pipeline_hops(OpenStep& s) {
  for (const auto& [hop, late] : s.pipeline_late_s) {
    auto& baseline = hop_baseline_[hop];
    if (static_cast<int>(baseline.size()) < options_.window) {
      baseline.push_back(late);
      continue;
    }
    const double excess = late - median(baseline);
    if (excess <= 0) continue;
    s.blame_s[static_cast<size_t>(hop.first)] += excess;
    s.wait_s[static_cast<size_t>(hop.second)] += excess;
  }
}

FaultDetector::LinkStats FaultDetector::link_stats(const std::vector<LinkTransfer>& transfers) {
  LinkStats out;
  std::vector<double> rates, all_rates;
  for (const auto& t : transfers) {
    out.seconds += t.seconds;
    if (t.bytes == 0) continue;
    const double r = t.seconds / static_cast<double>(t.bytes);
    all_rates.push_back(r);
    if (t.bytes >= kRateMinBytes) rates.push_back(r);
  }
  out.rate = median(rates.empty() ? all_rates : rates);
  for (const auto& t : transfers) {
    out.excess_s += std::max(0.0, t.seconds - out.rate * static_cast<double>(t.bytes));
  }
  return out;
}

std::map<FaultDetector::SuspectKey, nlohmann::json> FaultDetector::suspects_of(const OpenStep& s,
                                                                               double step_time) const {
  std::map<SuspectKey, nlohmann::json> out;
  std::map<std::pair<int, int>, LinkStats> stats;
  for (const auto& [link, transfers] : s.links) stats[link] = link_stats(transfers);
  auto slow = slow_links(stats, step_time);
  // Transfers that took longer than their link's typical time stalled at their receivers, except
  // over a link slow in the step: their spread there (queued behind each other) is the link's.
  std::vector<double> stalled_s(s.blame_s.size(), 0.0);
  for (const auto& [link, st] : stats) {
    if (link.second >= 0 && link.second < world_size_ && !slow.contains(link))
      stalled_s[static_cast<size_t>(link.second)] += st.excess_s;
  }
  // The rank the others waited for: late into collectives, or late taking in transfers.
  std::vector<double> kept(s.blame_s.size());
  for (size_t i = 0; i < kept.size(); ++i) kept[i] = s.blame_s[i] + stalled_s[i];
  const auto worst = std::max_element(kept.begin(), kept.end());
  const auto r = static_cast<size_t>(worst - kept.begin());
  if (*worst >= options_.slow_rank_share * step_time && s.wait_s[r] <= 0.5 * *worst) {
    out[{static_cast<int>(r), kRankKey}] = {{"others_waited_share", *worst / step_time},
                                            {"late_entry_share", s.blame_s[r] / step_time},
                                            {"receive_stall_share", stalled_s[r] / step_time},
                                            {"own_wait_share", s.wait_s[r] / step_time},
                                            {"step_time_s", step_time}};
    // Slow for want of a CPU (another process on its core) rather than slow at its work.
    if (r < s.run_queue_s.size())
      out[{static_cast<int>(r), kRankKey}]["run_queue_wait_share"] = s.run_queue_s[r] / step_time;
  }
  add_slow_stage_suspects(out, s);
  add_link_suspects(out, s, stats, std::move(slow), step_time);
  return out;
}

void FaultDetector::add_slow_stage_suspects(std::map<SuspectKey, nlohmann::json>& out,
                                            const OpenStep& s) const {
  const auto& predicted = options_.predicted_compute_s;
  const size_t n = predicted.size();
  if (n < 2 || n != static_cast<size_t>(world_size_) || s.compute_s.size() != n) return;
  std::vector<double> ratio(n);
  for (size_t r = 0; r < n; ++r) {
    if (!(predicted[r] > 0) || !(s.compute_s[r] > 0)) return;  // a rank unreported: nothing to compare
    ratio[r] = s.compute_s[r] / predicted[r];
  }
  // The median of the other ranks' ratios: sorted once, each rank's own left out by its position.
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ratio[a] < ratio[b]; });
  std::vector<size_t> position(n);
  for (size_t i = 0; i < n; ++i) position[order[i]] = i;
  for (size_t r = 0; r < n; ++r) {
    const auto other = [&](size_t i) { return ratio[order[i < position[r] ? i : i + 1]]; };  // i < n - 1
    const size_t m = n - 1;
    const double typical = m % 2 ? other(m / 2) : (other(m / 2 - 1) + other(m / 2)) / 2;
    if (ratio[r] < options_.slow_stage_factor * typical) continue;
    auto& e = out[{static_cast<int>(r), kRankKey}];
    e["compute_s"] = s.compute_s[r];
    e["predicted_compute_s"] = predicted[r];
    e["compute_over_others"] = ratio[r] / typical;
  }
}

std::map<std::pair<int, int>, nlohmann::json> FaultDetector::slow_links(
    const std::map<std::pair<int, int>, LinkStats>& stats, double step_time) const {
  std::map<std::pair<int, int>, nlohmann::json> slow;
  size_t measured = 0;
  for (const auto& [link, st] : stats) measured += st.rate > 0 ? 1 : 0;
  if (measured < kMinLinks) return slow;
  for (const auto& [link, st] : stats) {
    std::vector<double> others;
    for (const auto& [other, o] : stats) {
      if (other != link && o.rate > 0) others.push_back(o.rate);
    }
    const double ref = median(others);
    if (st.rate <= 0 || ref <= 0 || st.rate < options_.slow_link_factor * ref) continue;
    if (st.seconds < options_.slow_link_share * step_time) continue;
    slow[link] = {{"seconds_per_mb", st.rate * 1e6},
                  {"others_seconds_per_mb", ref * 1e6},
                  {"ratio", st.rate / ref},
                  {"share_of_step", st.seconds / step_time}};
  }
  return slow;
}

void FaultDetector::blame_starved_ends(std::map<SuspectKey, nlohmann::json>& out, const OpenStep& s,
                                       const std::map<std::pair<int, int>, LinkStats>& stats,
                                       std::map<std::pair<int, int>, nlohmann::json>& slow,
                                       double step_time) const {
  std::set<std::pair<int, int>> slow_before;
  for (const auto& [link, e] : slow) slow_before.insert(link);
  const auto starved = [&](int x, bool receiving, std::pair<int, int> link) {
    if (x < 0 || static_cast<size_t>(x) >= s.run_queue_s.size() ||
        s.run_queue_s[static_cast<size_t>(x)] < 0.5 * stats.at(link).seconds)
      return false;
    for (const auto& [l, st] : stats) {
      if (l != link && st.rate > 0 && (receiving ? l.second : l.first) == x && !slow_before.contains(l))
        return false;
    }
    return true;
  };
  for (auto it = slow.begin(); it != slow.end();) {
    const auto [src, dst] = it->first;
    const int end = starved(dst, true, it->first) ? dst : starved(src, false, it->first) ? src : -1;
    if (end < 0) {
      ++it;
      continue;
    }
    auto& e = out[{end, kRankKey}];
    if (e.is_null()) e = {{"step_time_s", step_time}};
    e["pattern"] = "starved: the rank waited for a CPU for much of its slow links' time";
    e["run_queue_wait_share"] = s.run_queue_s[static_cast<size_t>(end)] / step_time;
    e["slow_links"].push_back({src, dst});
    it = slow.erase(it);
  }
}

void FaultDetector::collapse_reverse_pairs(std::map<std::pair<int, int>, nlohmann::json>& slow,
                                           const OpenStep& s, double step_time) const {
  const auto slow_links_of = [&](int x) {
    return std::count_if(slow.begin(), slow.end(),
                         [&](const auto& l) { return l.first.first == x || l.first.second == x; });
  };
  const auto late = [&](int x) {
    return x >= 0 && static_cast<size_t>(x) < s.blame_s.size() &&
           s.blame_s[static_cast<size_t>(x)] >= options_.slow_rank_share * step_time;
  };
  for (auto it = slow.begin(); it != slow.end();) {
    const auto [a, b] = it->first;
    const auto reverse = slow.find({b, a});
    if (reverse == slow.end() || slow_links_of(a) != 2 || slow_links_of(b) != 2 || late(a) || late(b) ||
        reverse->second.at("ratio").get<double>() < it->second.at("ratio").get<double>()) {
      ++it;
      continue;
    }
    reverse->second["reverse_also_slow"] = {{"ratio", it->second.at("ratio")}};
    it = slow.erase(it);
  }
}

void FaultDetector::add_link_suspects(std::map<SuspectKey, nlohmann::json>& out, const OpenStep& s,
                                      const std::map<std::pair<int, int>, LinkStats>& stats,
                                      std::map<std::pair<int, int>, nlohmann::json> slow,
                                      double step_time) const {
  blame_starved_ends(out, s, stats, slow, step_time);
  collapse_reverse_pairs(slow, s, step_time);
  // A rank with slow links both in and out: the rank itself when it is also late into collectives
  // (it progresses everything late), else its node's network (its NIC, its host's link); not two
  // separate links either way.
  std::set<int> nodes;
  for (int x = 0; x < world_size_; ++x) {
    nlohmann::json in_and_out = nlohmann::json::array();
    bool in = false, outgoing = false;
    for (const auto& [link, e] : slow) {
      if (link.second != x && link.first != x) continue;
      (link.second == x ? in : outgoing) = true;
      in_and_out.push_back({link.first, link.second});
    }
    if (!in || !outgoing) continue;
    nodes.insert(x);
    const bool late = s.blame_s[static_cast<size_t>(x)] >= options_.slow_rank_share * step_time;
    auto& e = out[{x, late ? kRankKey : kNodeKey}];
    if (e.is_null()) e = {{"step_time_s", step_time}};
    e["slow_links_in_and_out"] = std::move(in_and_out);
    if (!late)
      e["pattern"] = "node: the links in and out of the rank are slow, the rank is not late otherwise";
  }
  for (const auto& [link, e] : slow) {
    if (nodes.contains(link.first) || nodes.contains(link.second)) continue;
    // One link per sender and receiver in a ring: the cell cannot be told from the sender's
    // sending side or the receiver's receiving side unless either has other links measured.
    int from_src = 0, slow_from_src = 0, into_dst = 0, slow_into_dst = 0;
    for (const auto& [l, st] : stats) {
      if (st.rate <= 0) continue;
      if (l.first == link.first) ++from_src, slow_from_src += slow.contains(l) ? 1 : 0;
      if (l.second == link.second) ++into_dst, slow_into_dst += slow.contains(l) ? 1 : 0;
    }
    auto evidence = e;
    SuspectKey key = link;
    if (from_src >= 2 && slow_from_src == from_src) {
      key = {link.first, -1};
      evidence["pattern"] = "row: every link out of the sender is slow (its node or NIC sending)";
    } else if (into_dst >= 2 && slow_into_dst == into_dst) {
      key = {-1, link.second};
      evidence["pattern"] = "column: every link into the receiver is slow (its node or NIC receiving)";
    } else {
      evidence["pattern"] = from_src >= 2 || into_dst >= 2
                                ? "cell: the sender's and the receiver's other links are not slow"
                                : "cell: the only link measured out of the sender and into the receiver";
    }
    out[key] = evidence;
  }
}

std::vector<Verdict> FaultDetector::update_suspects(int64_t step,
                                                    const std::map<SuspectKey, nlohmann::json>& now) {
  for (const auto& [key, e] : now) suspects_.try_emplace(key);
  std::vector<Verdict> verdicts;
  for (auto it = suspects_.begin(); it != suspects_.end();) {
    auto& [key, s] = *it;
    const auto found = now.find(key);
    s.flags.push_back(found != now.end());
    if (found != now.end()) s.evidence = found->second;
    while (static_cast<int>(s.flags.size()) > options_.window) s.flags.pop_front();
    const int count = static_cast<int>(std::count(s.flags.begin(), s.flags.end(), true));
    if (!s.raised && count >= options_.persist) {
      s.raised = true;
      Verdict v;
      v.step = step;
      v.evidence = s.evidence;
      v.evidence["suspect_steps"] = count;
      v.evidence["window_steps"] = static_cast<int>(s.flags.size());
      if (key.second == kRankKey) {
        v.kind = FaultKind::kSlowRank;
        v.ranks = {key.first};
      } else if (key.second == kNodeKey) {
        v.kind = FaultKind::kSlowLink;
        v.ranks = {key.first};
        degraded_.insert({key.first, -1});
        degraded_.insert({-1, key.first});
      } else {
        v.kind = FaultKind::kSlowLink;
        v.link = key;
        if (key.first >= 0 && key.second < 0) v.ranks = {key.first};
        if (key.first < 0) v.ranks = {key.second};
        degraded_.insert(key);
      }
      verdicts.push_back(std::move(v));
    }
    if (s.raised && count == 0) s.raised = false;  // a whole window clean: the episode is over
    if (!s.raised && count == 0) {
      it = suspects_.erase(it);
    } else {
      ++it;
    }
  }
  return verdicts;
}

double FaultDetector::suspicion(int rank) const {
  const auto it = suspects_.find({rank, kRankKey});
  if (it == suspects_.end() || options_.window <= 0) return 0;
  return static_cast<double>(std::count(it->second.flags.begin(), it->second.flags.end(), true)) /
         options_.window;
}

std::optional<uint64_t> FaultDetector::last_completed(int rank, const std::string& group) const {
  const auto it = last_completed_.find({rank, group});
  if (it == last_completed_.end()) return std::nullopt;
  return it->second;
}

}  // namespace rondo

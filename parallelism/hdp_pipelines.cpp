#include "parallelism/hdp_pipelines.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "common/errors.h"
#include "parallelism/rank_timelines.h"
#include "pipeline/pipeline_schedule.h"

namespace rondo {

namespace {

// Every pipeline's sub-batches in waves, in each pipeline's order (the planner's, by start): a
// sub-batch alone on its pipeline takes the pipeline's next wave; a group's, once it heads every
// member's remaining sub-batches, the first wave all its members have free. Times play no part.
void assign_waves(HdpPipelinePlan& out) {
  const auto& subs = out.hdp.sub_batches;
  const size_t pipelines = subs.size();
  out.wave.assign(pipelines, {});
  for (size_t p = 0; p < pipelines; ++p) out.wave[p].assign(subs[p].size(), -1);
  std::vector<size_t> cursor(pipelines, 0);  // each pipeline's first sub-batch without a wave
  std::vector<int64_t> next(pipelines, 0);   // and its first free wave
  size_t left = 0;
  for (const auto& p : subs) left += p.size();
  while (left > 0) {
    const size_t before = left;
    for (size_t p = 0; p < pipelines; ++p) {
      for (; cursor[p] < subs[p].size();) {
        const auto& sb = subs[p][cursor[p]];
        const auto heads = [&](int64_t q64) {
          const auto q = static_cast<size_t>(q64);
          return cursor[q] < subs[q].size() && subs[q][cursor[q]].group == sb.group &&
                 subs[q][cursor[q]].sequences == sb.sequences;
        };
        if (!std::all_of(sb.group.begin(), sb.group.end(), heads)) break;  // a member has others first
        int64_t w = 0;
        for (int64_t q : sb.group) w = std::max(w, next[static_cast<size_t>(q)]);
        for (int64_t q64 : sb.group) {
          const auto q = static_cast<size_t>(q64);
          out.wave[q][cursor[q]++] = w;
          next[q] = w + 1;
          --left;
        }
        out.waves = std::max(out.waves, w + 1);
      }
    }
    if (left == before)
      throw std::logic_error("hdp waves: the pipelines' sub-batches meet their groups in different orders");
  }
  out.in_wave.assign(pipelines, std::vector<int64_t>(static_cast<size_t>(out.waves), -1));
  for (size_t p = 0; p < pipelines; ++p)
    for (size_t i = 0; i < out.wave[p].size(); ++i)
      out.in_wave[p][static_cast<size_t>(out.wave[p][i])] = static_cast<int64_t>(i);
}

struct Rank {
  std::vector<ComputeAction> actions;  // the template's, less the waves it has nothing in
  size_t at = 0;
  double free = 0;
};

// The step on every rank, each group's forward and backward on a stage starting when all its
// members are ready for it.
class WaveSimulation {
 public:
  WaveSimulation(HdpPipelinePlan& plan, const ContextParallelCost& cost)
      : plan_(plan), cost_(cost), pipelines_(plan.hdp.sub_batches.size()), stages_(plan.stages) {
    PipelineSchedule tmpl;
    if (plan.waves > 0)
      tmpl =
          generate_schedule({plan.schedule, static_cast<int>(stages_), static_cast<int>(plan.waves), 1, {}});
    ranks_.assign(pipelines_, std::vector<Rank>(static_cast<size_t>(stages_)));
    const auto none = std::vector<double>(static_cast<size_t>(plan.waves), -1.0);
    forward_done_.assign(pipelines_, std::vector<std::vector<double>>(static_cast<size_t>(stages_), none));
    backward_done_ = forward_done_;
    for (size_t p = 0; p < pipelines_; ++p) {
      for (int64_t s = 0; s < stages_ && plan.waves > 0; ++s) {
        for (const auto& a : tmpl.ranks.at(static_cast<size_t>(s)))
          if (plan.sub_batch_in(static_cast<int64_t>(p), a.microbatch) >= 0) rank(p, s).actions.push_back(a);
      }
    }
    plan.busy_s.assign(pipelines_, std::vector<double>(static_cast<size_t>(stages_), 0.0));
  }

  void run() {
    for (bool moved = true; moved;) {
      moved = false;
      for (size_t p = 0; p < pipelines_; ++p)
        for (int64_t s = 0; s < stages_; ++s)
          while (advance(p, s)) moved = true;
    }
    for (size_t p = 0; p < pipelines_; ++p)
      for (int64_t s = 0; s < stages_; ++s)
        if (rank(p, s).at < rank(p, s).actions.size())
          throw std::logic_error("hdp waves: pipeline " + std::to_string(p) + " stage " + std::to_string(s) +
                                 " waits forever at " + to_string(rank(p, s).actions[rank(p, s).at]));
  }

 private:
  Rank& rank(size_t p, int64_t s) { return ranks_[p][static_cast<size_t>(s)]; }
  const HdpSubBatch& sub_batch(size_t p, int wave) const {
    return plan_.hdp.sub_batches[p][static_cast<size_t>(plan_.sub_batch_in(static_cast<int64_t>(p), wave))];
  }
  double transfer_s(const HdpSubBatch& sb) const {
    const auto& spec = cost_.spec();
    const double bytes = static_cast<double>(sb.tokens_per_rank) *
                         static_cast<double>(spec.dims.hidden_size) * spec.bytes_per_value;
    return spec.link_latency_s + bytes / spec.link_bytes_per_s;
  }
  // When rank (p, s) may start `a` as far as its inputs go; -1 while one is not done.
  double ready(size_t p, int64_t s, const ComputeAction& a) const {
    const auto w = static_cast<size_t>(a.microbatch);
    const auto si = static_cast<size_t>(s);
    if (a.kind == ComputeKind::kF) {
      if (s == 0) return 0;
      const double d = forward_done_[p][si - 1][w];
      return d < 0 ? -1 : d + transfer_s(sub_batch(p, a.microbatch));
    }
    if (s == stages_ - 1) return forward_done_[p][si][w];
    const double d = backward_done_[p][si + 1][w];
    return d < 0 ? -1 : d + transfer_s(sub_batch(p, a.microbatch));
  }
  bool advance(size_t p, int64_t s) {
    Rank& r = rank(p, s);
    if (r.at >= r.actions.size()) return false;
    const ComputeAction a = r.actions[r.at];
    const auto& sb = sub_batch(p, a.microbatch);
    double start = 0;
    for (int64_t q64 : sb.group) {  // every member at this action, its inputs done
      const auto q = static_cast<size_t>(q64);
      const Rank& m = rank(q, s);
      if (m.at >= m.actions.size() || !(m.actions[m.at] == a)) return false;
      const double t = ready(q, s, a);
      if (t < 0) return false;
      start = std::max({start, t, m.free});
    }
    const double share = (a.kind == ComputeKind::kF ? 1.0 : 2.0) / 3.0;
    const double seconds = share * hdp_sub_batch_seconds(plan_.hdp, sb) / static_cast<double>(stages_);
    for (int64_t q64 : sb.group) {
      const auto q = static_cast<size_t>(q64);
      Rank& m = rank(q, s);
      m.free = start + seconds;
      ++m.at;
      plan_.busy_s[q][static_cast<size_t>(s)] += seconds;
      auto& done = a.kind == ComputeKind::kF ? forward_done_ : backward_done_;
      done[q][static_cast<size_t>(s)][static_cast<size_t>(a.microbatch)] = m.free;
      plan_.step_s = std::max(plan_.step_s, m.free);
    }
    return true;
  }

  HdpPipelinePlan& plan_;
  const ContextParallelCost& cost_;
  size_t pipelines_;
  int64_t stages_;
  std::vector<std::vector<Rank>> ranks_;
  std::vector<std::vector<std::vector<double>>> forward_done_, backward_done_;  // [p][s][wave]
};

// rondo on pipelines: every sequence on the smallest group that computes it within `cell_s`
// (a pipeline's microbatch), groups longest first onto the pipelines free earliest, sequences
// alone packed first-fit into microbatches of up to `pack_s` and the cap, the largest first onto
// the least busy pipeline (or an idle gap a group leaves). Small microbatches shorten the fill and
// drain of every pipeline, larger groups cost ring transfers: plan_hdp_pipelines tries several.
HdpPlan plan_cells_within(const std::vector<int64_t>& lengths, const HdpOptions& o,
                          const ContextParallelCost& cost, double cell_s, double pack_s) {
  HdpPlan plan;
  plan.policy = HdpPolicy::kRondo;
  plan.placements.resize(lengths.size());
  plan.sub_batches.resize(static_cast<size_t>(o.ranks));
  std::vector<int64_t> degree(lengths.size());
  std::vector<double> seconds(lengths.size());
  for (size_t i = 0; i < lengths.size(); ++i) {
    const int64_t lowest = hdp_min_degree(lengths[i], o);
    degree[i] = hdp_degree_within(lengths[i], lowest, o, cell_s, cost);
    if (degree[i] < 0) degree[i] = hdp_fastest_degree(lengths[i], lowest, o, cost);
    seconds[i] = hdp_best_seconds(lengths[i], degree[i], o, cost);
  }
  std::vector<size_t> order(lengths.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return seconds[a] > seconds[b]; });
  RankTimelines timelines(o.ranks, o.hosts);
  struct Pack {
    double seconds = 0;
    int64_t tokens = 0;
    std::vector<int64_t> sequences;
  };
  std::vector<Pack> packs;
  for (size_t i : order) {
    if (degree[i] > 1) {
      auto ranks = timelines.earliest_group(degree[i], seconds[i], cost.seconds(lengths[i], degree[i], true));
      seconds[i] = hdp_group_seconds(lengths[i], ranks, o, cost);
      const double start = timelines.place(ranks, seconds[i]);
      const int64_t share = (lengths[i] + degree[i] - 1) / degree[i];
      for (int64_t r : ranks)
        plan.sub_batches[static_cast<size_t>(r)].push_back({{static_cast<int64_t>(i)}, ranks, share, start});
      plan.placements[i] = {lengths[i], std::move(ranks), start, seconds[i]};
      continue;
    }
    auto fits = [&](const Pack& p) {
      return p.seconds + seconds[i] <= pack_s && p.tokens + lengths[i] <= o.max_tokens_per_rank;
    };
    auto it = std::find_if(packs.begin(), packs.end(), fits);
    if (it == packs.end()) it = packs.insert(packs.end(), Pack{});
    it->seconds += seconds[i];
    it->tokens += lengths[i];
    it->sequences.push_back(static_cast<int64_t>(i));
  }
  std::stable_sort(packs.begin(), packs.end(),
                   [](const Pack& a, const Pack& b) { return a.seconds > b.seconds; });
  for (const auto& pack : packs) {
    const auto [rank, start] = timelines.place_alone(pack.seconds);
    double at = start;
    for (int64_t i : pack.sequences) {
      plan.placements[static_cast<size_t>(i)] = {
          lengths[static_cast<size_t>(i)], {rank}, at, seconds[static_cast<size_t>(i)]};
      at += seconds[static_cast<size_t>(i)];
    }
    plan.sub_batches[static_cast<size_t>(rank)].push_back({pack.sequences, {rank}, pack.tokens, start});
  }
  for (auto& subs : plan.sub_batches)
    std::stable_sort(subs.begin(), subs.end(),
                     [](const HdpSubBatch& a, const HdpSubBatch& b) { return a.start_s < b.start_s; });
  plan.busy_s = timelines.busy();
  plan.step_s = timelines.finish();
  return plan;
}

}  // namespace

std::string hdp_wave_schedule(int64_t stages, const std::string& schedule) {
  if (stages <= 1) return "1f1b";  // each sub-batch's forward then its backward
  if (schedule != "1f1b" && schedule != "gpipe")
    throw ConfigError("pipeline.schedule",
                      "HDP with pipeline parallelism runs gpipe or 1f1b, not '" + schedule + "'");
  return schedule;
}

double hdp_sub_batch_seconds(const HdpPlan& plan, const HdpSubBatch& sb) {
  double seconds = 0;
  for (int64_t s : sb.sequences) seconds += plan.placements.at(static_cast<size_t>(s)).seconds;
  return seconds;
}

int64_t HdpPipelinePlan::sub_batch_in(int64_t pipeline, int64_t w) const {
  if (w < 0 || w >= waves) return -1;
  return in_wave.at(static_cast<size_t>(pipeline))[static_cast<size_t>(w)];
}

double HdpPipelinePlan::busy_max_over_mean() const {
  double sum = 0, most = 0;
  size_t n = 0;
  for (const auto& p : busy_s)
    for (double b : p) sum += b, most = std::max(most, b), ++n;
  return n > 0 && sum > 0 ? most / (sum / static_cast<double>(n)) : 1.0;
}

HdpPipelinePlan plan_hdp_waves(HdpPlan hdp, int64_t stages, const std::string& schedule,
                               const ContextParallelCost& cost) {
  if (stages < 1) throw ConfigError("parallel.pipeline_model_parallel_size", "must be >= 1");
  HdpPipelinePlan out;
  out.schedule = hdp_wave_schedule(stages, schedule);
  out.hdp = std::move(hdp);
  out.stages = stages;
  assign_waves(out);
  WaveSimulation(out, cost).run();
  return out;
}

HdpPipelinePlan plan_hdp_pipelines(const std::vector<int64_t>& lengths, HdpPolicy policy,
                                   const HdpOptions& options, int64_t stages, const std::string& schedule,
                                   const ContextParallelCost& cost) {
  HdpPipelinePlan best = plan_hdp_waves(plan_hdp(lengths, policy, options, cost), stages, schedule, cost);
  if (policy != HdpPolicy::kRondo || stages == 1 || lengths.empty()) return best;
  // Microbatches from as long as the longest sequence on its fewest ranks down to an eighth of
  // a pipeline's share of the work over its stages, by factors of sqrt(2); the best step wins.
  double longest = 0, work = 0;
  for (int64_t l : lengths) {
    const int64_t d = hdp_min_degree(l, options);
    const double seconds = hdp_best_seconds(l, d, options, cost);
    longest = std::max(longest, seconds);
    work += static_cast<double>(d) * seconds;
  }
  const double floor_s = work / static_cast<double>(options.ranks) / static_cast<double>(8 * stages);
  for (double cell_s = std::max(longest, floor_s); cell_s >= floor_s; cell_s /= std::sqrt(2.0)) {
    for (double pack_s = cell_s; pack_s >= floor_s; pack_s /= std::sqrt(2.0)) {
      auto plan =
          plan_hdp_waves(plan_cells_within(lengths, options, cost, cell_s, pack_s), stages, schedule, cost);
      if (plan.step_s < best.step_s) best = std::move(plan);
    }
  }
  return best;
}

}  // namespace rondo

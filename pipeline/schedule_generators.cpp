// Schedule generators. gpipe, 1f1b, interleaved_1f1b and looped_bfs follow their fixed published
// orders;
// zb_h1 and zbv are placed by a greedy list scheduler (highest-priority ready op first, under a
// per-rank activation-memory limit), as the zero-bubble paper's heuristic does.
#include <algorithm>
#include <limits>
#include <numeric>
#include <optional>
#include <queue>
#include <stdexcept>
#include <string>
#include <utility>

#include "common/errors.h"
#include "pipeline/pipeline_schedule.h"
#include "pipeline/roundpipe_schedule.h"

namespace rondo {

char compute_kind_letter(ComputeKind kind) {
  switch (kind) {
    case ComputeKind::kF:
      return 'F';
    case ComputeKind::kB:
      return 'B';
    case ComputeKind::kI:
      return 'I';
    case ComputeKind::kW:
      return 'W';
  }
  return '?';
}

std::string to_string(const ComputeAction& a) {
  return std::to_string(a.stage) + compute_kind_letter(a.kind) + std::to_string(a.microbatch);
}

size_t PipelineSchedule::num_actions() const {
  size_t n = 0;
  for (const auto& r : ranks) n += r.size();
  return n;
}

ChunkGroups::ChunkGroups(std::vector<int> sizes) : sizes_(std::move(sizes)) {
  for (int size : sizes_) {
    if (size < 1) throw std::invalid_argument("a chunk group of " + std::to_string(size) + " chunks");
    const int first = static_cast<int>(first_.size());
    for (int i = 0; i < size; ++i) {
      first_.push_back(first);
      end_.push_back(first + size);
    }
  }
}

ChunkGroups ChunkGroups::uniform(int microbatches, int size) {
  if (size < 1 || microbatches % size != 0) {
    throw ConfigError("microbatches", std::to_string(microbatches) + " microbatches are not groups of " +
                                          std::to_string(size) + " chunks");
  }
  return ChunkGroups(std::vector<int>(static_cast<size_t>(microbatches / size), size));
}

int ChunkGroups::largest() const {
  return sizes_.empty() ? 1 : *std::max_element(sizes_.begin(), sizes_.end());
}

std::vector<int> ChunkGroups::backward_order() const {
  std::vector<int> out;
  for (int first = 0; first < microbatches(); first = end(first)) {
    for (int mb = end(first); mb-- > first;) out.push_back(mb);
  }
  return out;
}

std::vector<ComputeAction> action_inputs(const PipelineSchedule& s, const ComputeAction& a) {
  const int mb = a.microbatch;
  const auto& groups = s.chunk_groups;
  std::vector<ComputeAction> out;
  switch (a.kind) {
    case ComputeKind::kF:
      if (a.stage > 0) out.push_back({ComputeKind::kF, a.stage - 1, mb});
      if (!groups.empty() && groups.first(mb) < mb) out.push_back({ComputeKind::kF, a.stage, mb - 1});
      break;
    case ComputeKind::kB:
    case ComputeKind::kI:
      if (s.num_backward_stages > 0) {
        if (a.stage == 0) return {{ComputeKind::kF, s.num_stages - 1, mb}};
        return {{ComputeKind::kB, a.stage - 1, mb}};
      }
      out.push_back({ComputeKind::kF, a.stage, mb});
      if (a.stage < s.num_stages - 1) out.push_back({a.kind, a.stage + 1, mb});
      if (!groups.empty() && mb + 1 < groups.end(mb)) out.push_back({a.kind, a.stage, mb + 1});
      break;
    case ComputeKind::kW:
      out.push_back({ComputeKind::kI, a.stage, mb});
      break;
  }
  return out;
}

std::vector<int> PipelineSchedule::stage_ranks() const {
  std::vector<int> out(static_cast<size_t>(num_stages), 0);
  for (size_t r = 0; r < ranks.size(); ++r) {
    for (const auto& a : ranks[r]) {
      if (a.kind == ComputeKind::kF) out[static_cast<size_t>(a.stage)] = static_cast<int>(r);
    }
  }
  return out;
}

std::vector<StageLayers> model_atoms(int num_layers) {
  std::vector<StageLayers> atoms{{0, 0, 0, true, false}};
  for (int l = 0; l < num_layers; ++l) atoms.push_back({l + 1, l, 1, false, false});
  atoms.push_back({num_layers + 1, num_layers, 0, false, true});
  return atoms;
}

std::pair<int, int> atoms_of(const StageLayers& st, int num_layers) {
  const int first = st.has_embedding ? 0 : st.first_layer + 1;
  const int end = st.has_lm_head ? num_layers + 2 : st.first_layer + st.num_layers + 1;
  return {first, end};
}

StageLayers stage_of_atoms(int index, int first, int end, int num_layers) {
  // Atoms [first, end) hold blocks [first - 1, end - 1), clamped to the model's.
  const int first_block = std::clamp(first, 1, num_layers + 1) - 1,
            end_block = std::clamp(end, 1, num_layers + 1) - 1;
  return {index, first_block, end_block - first_block, first == 0 && end > 0,
          first < num_layers + 2 && end == num_layers + 2};
}

std::vector<StageLayers> partition_layers_evenly(int num_layers, int pp, int vpp) {
  const int stages = pp * vpp;
  if (stages < 1 || num_layers % stages != 0) {
    throw PlanError("cannot split " + std::to_string(num_layers) + " layers into " + std::to_string(stages) +
                    " equal stages");
  }
  const int per = num_layers / stages;
  std::vector<StageLayers> out(static_cast<size_t>(stages));
  for (int s = 0; s < stages; ++s) {
    auto& st = out[static_cast<size_t>(s)];
    st.index = s;
    st.first_layer = s * per;
    st.num_layers = per;
    st.has_embedding = s == 0;
    st.has_lm_head = s == stages - 1;
  }
  return out;
}

namespace {

PipelineSchedule skeleton(const ScheduleRequest& req, int num_stages, int v, bool split) {
  PipelineSchedule s;
  s.name = req.name;
  s.pp = req.pp;
  s.num_stages = num_stages;
  s.microbatches = req.microbatches;
  s.virtual_stages = v;
  s.split_backward = split;
  s.stage_share.assign(static_cast<size_t>(num_stages), 1.0 / v);
  s.weight_grad_memory = req.weight_grad_memory;
  s.ranks.resize(static_cast<size_t>(req.pp));
  return s;
}

// The order the backwards of gpipe and 1f1b run: the microbatches', or with chunk groups group
// by group, each group's chunks in reverse.
std::vector<int> backward_order(const ScheduleRequest& req) {
  if (!req.chunk_groups.empty()) return req.chunk_groups.backward_order();
  std::vector<int> out(static_cast<size_t>(req.microbatches));
  std::iota(out.begin(), out.end(), 0);
  return out;
}

PipelineSchedule gpipe(const ScheduleRequest& req) {
  auto s = skeleton(req, req.pp, 1, false);
  const auto backwards = backward_order(req);
  for (int r = 0; r < req.pp; ++r) {
    auto& out = s.ranks[static_cast<size_t>(r)];
    for (int i = 0; i < req.microbatches; ++i) out.push_back({ComputeKind::kF, r, i});
    for (int mb : backwards) out.push_back({ComputeKind::kB, r, mb});
  }
  return s;
}

PipelineSchedule one_f_one_b(const ScheduleRequest& req) {
  auto s = skeleton(req, req.pp, 1, false);
  const int p = req.pp, m = req.microbatches;
  const auto backwards = backward_order(req);
  for (int r = 0; r < p; ++r) {
    auto& out = s.ranks[static_cast<size_t>(r)];
    // PipeDream-Flush: before its b-th backward a rank has run b + p - r forwards (warm-up, then
    // one forward one backward, then cool-down): its own microbatch's and p - r - 1 after it.
    // With chunk groups a backward needs its whole group's forwards (the group's last chunk runs
    // its backward first) and the same p - r - 1 after the group's last; and the steady state
    // still alternates, one more forward before each backward, so a group's backwards overlap
    // the next forwards instead of leaving the next stage idle.
    int f = 0, need = 0;
    for (int b = 0; b < m; ++b) {
      const int mb = backwards[static_cast<size_t>(b)];
      need = std::min(m, std::max({need + 1, b + p - r, req.chunk_groups.end(mb) + p - r - 1}));
      while (f < need) out.push_back({ComputeKind::kF, r, f++});
      out.push_back({ComputeKind::kB, r, mb});
    }
  }
  return s;
}

PipelineSchedule interleaved(const ScheduleRequest& req) {
  const int p = req.pp, m = req.microbatches, v = req.virtual_stages;
  if (m % p != 0) {
    throw ConfigError("microbatches", "interleaved_1f1b needs the microbatch count (" + std::to_string(m) +
                                          ") to be a multiple of pp (" + std::to_string(p) + ")");
  }
  auto s = skeleton(req, p * v, v, false);
  const int total = m * v;
  // Megatron's order: microbatches advance in groups of p, cycling through the chunks.
  auto f_chunk = [&](int k) { return (k / p) % v; };
  auto b_chunk = [&](int k) { return v - 1 - (k / p) % v; };
  auto mb = [&](int k) { return (k / (p * v)) * p + k % p; };
  for (int r = 0; r < p; ++r) {
    auto& out = s.ranks[static_cast<size_t>(r)];
    const int warmup = std::min((p - r - 1) * 2 + (v - 1) * p, total);
    int f = 0, b = 0;
    for (; f < warmup; ++f) out.push_back({ComputeKind::kF, f_chunk(f) * p + r, mb(f)});
    while (f < total) {
      out.push_back({ComputeKind::kF, f_chunk(f) * p + r, mb(f)});
      ++f;
      out.push_back({ComputeKind::kB, b_chunk(b) * p + r, mb(b)});
      ++b;
    }
    for (; b < total; ++b) out.push_back({ComputeKind::kB, b_chunk(b) * p + r, mb(b)});
  }
  return s;
}

// Breadth-first looping (torch.distributed.pipelining's ScheduleLoopedBFS, offered by
// torchtitan): rank r holds stages r, r+p, ...; it runs every microbatch's forward of one stage
// before its next stage's, then the backwards, its last stage first and the microbatches in
// reverse order (the last forward's activations are the first freed).
PipelineSchedule looped_bfs(const ScheduleRequest& req) {
  const int p = req.pp, m = req.microbatches, v = req.virtual_stages;
  auto s = skeleton(req, p * v, v, false);
  for (int r = 0; r < p; ++r) {
    auto& out = s.ranks[static_cast<size_t>(r)];
    for (int c = 0; c < v; ++c) {
      for (int i = 0; i < m; ++i) out.push_back({ComputeKind::kF, c * p + r, i});
    }
    for (int c = v - 1; c >= 0; --c) {
      for (int i = m - 1; i >= 0; --i) out.push_back({ComputeKind::kB, c * p + r, i});
    }
  }
  return s;
}

// The greedy zero-bubble scheduler's state: per stage and microbatch when each F and I ends,
// each stage's next F, I and W, and each rank's activation memory in flight.
struct GreedyZeroBubble {
  enum Pass { kInputGrad, kForward, kWeightGrad };
  struct Pick {
    ComputeKind kind;
    int stage;
  };
  static size_t us(int x) { return static_cast<size_t>(x); }
  static constexpr double kNever = std::numeric_limits<double>::infinity();

  PipelineSchedule& s;
  const StageCosts& costs;
  const std::vector<int>& stage_rank;
  const std::vector<double>& memory_limit;
  int m, S;
  std::vector<std::vector<double>> f_end, i_end;
  std::vector<int> next_f, next_i, next_w;
  std::vector<std::vector<int>> local;  // per rank: its stages, later ones first
  std::vector<double> inflight;

  GreedyZeroBubble(PipelineSchedule& sched, const StageCosts& c, const std::vector<int>& ranks_of_stages,
                   const std::vector<double>& limits, int pp, int microbatches)
      : s(sched),
        costs(c),
        stage_rank(ranks_of_stages),
        memory_limit(limits),
        m(microbatches),
        S(static_cast<int>(ranks_of_stages.size())),
        f_end(us(S), std::vector<double>(us(m), kNever)),
        i_end(f_end),
        next_f(us(S), 0),
        next_i(us(S), 0),
        next_w(us(S), 0),
        local(us(pp)),
        inflight(us(pp), 0.0) {
    for (int st = S - 1; st >= 0; --st) local[us(stage_rank[us(st)])].push_back(st);
  }

  double comm(int a, int b) const {
    return stage_rank[us(a)] == stage_rank[us(b)] ? 0.0 : costs.transfer_time();
  }

  // Whether stage `st` of rank `r` may run its next op of `pass` at time `t`.
  bool ready(Pass pass, int r, int st, double t) const {
    if (pass == kInputGrad) {
      if (next_i[us(st)] >= m) return false;
      const int mb = next_i[us(st)];
      const bool up_ready = st == S - 1 || i_end[us(st + 1)][us(mb)] + comm(st + 1, st) <= t;
      return f_end[us(st)][us(mb)] <= t && up_ready;
    }
    if (pass == kForward) {
      if (next_f[us(st)] >= m) return false;
      const int mb = next_f[us(st)];
      const bool down_ready = st == 0 || f_end[us(st - 1)][us(mb)] + comm(st - 1, st) <= t;
      // Leave room for one forward of each later stage on this rank, or its early stages could
      // fill the memory while the later ones (whose backwards free it) starve.
      double need = s.stage_share[us(st)];
      for (int later : local[us(r)]) {
        if (later > st) need += s.stage_share[us(later)];
      }
      return down_ready && inflight[us(r)] + need <= memory_limit[us(r)] + 1e-9;
    }
    return next_w[us(st)] < next_i[us(st)] && i_end[us(st)][us(next_w[us(st)])] <= t;
  }

  // Rank r's highest-priority ready op at `t`: I (later stage first), F (later stage first), W.
  std::optional<Pick> pick(int r, double t) const {
    constexpr ComputeKind kinds[] = {ComputeKind::kI, ComputeKind::kF, ComputeKind::kW};
    for (const Pass pass : {kInputGrad, kForward, kWeightGrad}) {
      for (int st : local[us(r)]) {
        if (ready(pass, r, st, t)) return Pick{kinds[pass], st};
      }
    }
    return std::nullopt;
  }

  // Starts `op` on rank r at `t`; returns its duration.
  double start(int r, const Pick& op, double t) {
    const int st = op.stage;
    double duration = 0;
    int mb = 0;
    switch (op.kind) {
      case ComputeKind::kF:
        mb = next_f[us(st)]++;
        duration = costs.f[us(st)];
        f_end[us(st)][us(mb)] = t + duration;
        inflight[us(r)] += s.stage_share[us(st)];
        break;
      case ComputeKind::kI:
        mb = next_i[us(st)]++;
        duration = costs.i(st);
        i_end[us(st)][us(mb)] = t + duration;
        // Freed when I ends (the rank is busy until then), except what W still needs.
        inflight[us(r)] -= s.stage_share[us(st)] * (1.0 - s.weight_grad_memory);
        break;
      default:
        mb = next_w[us(st)]++;
        duration = costs.w[us(st)];
        inflight[us(r)] -= s.stage_share[us(st)] * s.weight_grad_memory;
        break;
    }
    s.ranks[us(r)].push_back({op.kind, st, mb});
    return duration;
  }
};

// Greedy list scheduling with split backward: at every moment an idle rank starts its
// highest-priority ready op (I before F before W; among stages, the later one first), never
// holding more activations than its limit (a pending W holds part of its microbatch's
// activations, so a full rank runs W to make room). Deterministic for given costs.
PipelineSchedule greedy_zero_bubble(const ScheduleRequest& req, std::vector<int> stage_rank,
                                    std::vector<double> memory_limit, int v) {
  const int p = req.pp, m = req.microbatches, S = static_cast<int>(stage_rank.size());
  auto s = skeleton(req, S, v, true);
  const StageCosts costs =
      req.costs.empty() || req.costs.num_stages() != S ? uniform_stage_costs(S, v, 1.0, 2.0, 1.0) : req.costs;
  GreedyZeroBubble g(s, costs, stage_rank, memory_limit, p, m);
  std::vector<double> free_at(static_cast<size_t>(p), 0.0);
  std::priority_queue<double, std::vector<double>, std::greater<>> events;
  events.push(0.0);
  size_t remaining = static_cast<size_t>(S) * static_cast<size_t>(m) * 3;
  while (remaining > 0) {
    if (events.empty()) {
      throw PlanError(req.name + ": the greedy scheduler cannot progress under the activation-memory limit");
    }
    const double t = events.top();
    while (!events.empty() && events.top() <= t) events.pop();
    for (int r = 0; r < p; ++r) {
      if (free_at[static_cast<size_t>(r)] > t) continue;
      const auto op = g.pick(r, t);
      if (!op) continue;
      const double duration = g.start(r, *op, t);
      free_at[static_cast<size_t>(r)] = t + duration;
      events.push(t + duration);
      if (costs.transfer_time() > 0) events.push(t + duration + costs.transfer_time());
      --remaining;
    }
  }
  return s;
}

PipelineSchedule zb_h1(const ScheduleRequest& req) {
  const int p = req.pp;
  std::vector<int> placement(static_cast<size_t>(p));
  std::vector<double> limit(static_cast<size_t>(p));
  // Every rank may hold what 1F1B's first rank holds (p microbatches): delayed W's keep part
  // of their activations, and ZB-H1 bounds the peak, not each rank's 1F1B share.
  for (int r = 0; r < p; ++r) {
    placement[static_cast<size_t>(r)] = r;
    limit[static_cast<size_t>(r)] = std::min(p, req.microbatches);
  }
  return greedy_zero_bubble(req, placement, limit, 1);
}

PipelineSchedule zbv(const ScheduleRequest& req) {
  const int p = req.pp;
  // V shape: rank r holds stage r on the way down and stage 2p-1-r on the way back, so rank 0
  // holds both the first and the last stage.
  std::vector<int> placement(static_cast<size_t>(2 * p));
  for (int st = 0; st < 2 * p; ++st) placement[static_cast<size_t>(st)] = st < p ? st : 2 * p - 1 - st;
  // Every rank may hold as many activations as 1F1B's busiest rank (p full shares).
  std::vector<double> limit(static_cast<size_t>(p), static_cast<double>(std::min(p, req.microbatches)));
  return greedy_zero_bubble(req, placement, limit, 2);
}

}  // namespace

namespace {

// The registry: every schedule's name, its generator, and how many stages it places per rank.
// A new schedule is one line here (and its generator); names are listed nowhere else.
enum class Chunks { kOne, kVirtual, kTwo };
struct ScheduleEntry {
  const char* name;
  PipelineSchedule (*generate)(const ScheduleRequest&);
  Chunks chunks;
  bool deals_iterations;  // generates all iterations itself, synchronous or not (roundpipe)
};

const std::vector<ScheduleEntry>& registry() {
  static const std::vector<ScheduleEntry> entries = {
      {"gpipe", gpipe, Chunks::kOne, false},
      {"1f1b", one_f_one_b, Chunks::kOne, false},
      {"interleaved_1f1b", interleaved, Chunks::kVirtual, false},
      {"looped_bfs", looped_bfs, Chunks::kVirtual, false},
      {"zb_h1", zb_h1, Chunks::kOne, false},
      {"zbv", zbv, Chunks::kTwo, false},
      {"roundpipe", roundpipe_schedule, Chunks::kOne, true},
  };
  return entries;
}

const ScheduleEntry* find_schedule(const std::string& name) {
  for (const auto& e : registry()) {
    if (name == e.name) return &e;
  }
  return nullptr;
}

// Chunked training runs where every group's forwards precede its backwards on each stage.
void check_chunk_groups(const ScheduleRequest& req) {
  if (req.name != "gpipe" && req.name != "1f1b") {
    throw ConfigError("data.chunk_size",
                      "with pipeline parallelism, chunked training runs pipeline.schedule gpipe or 1f1b (a "
                      "sequence's chunks forward in order, then backward in reverse), not " +
                          req.name);
  }
  if (req.async) throw ConfigError("data.chunk_size", "chunked training has no asynchronous mode");
  if (req.chunk_groups.microbatches() != req.microbatches) {
    throw ConfigError("microbatches", std::to_string(req.microbatches) + " microbatches, chunk groups of " +
                                          std::to_string(req.chunk_groups.microbatches()) + " chunks");
  }
}



}  // namespace

bool takes_virtual_stages(const std::string& schedule) {
  const auto* e = find_schedule(schedule);
  return e != nullptr && e->chunks == Chunks::kVirtual;
}

int chunks_per_rank(const std::string& schedule, int virtual_stages) {
  const auto* e = find_schedule(schedule);
  if (e == nullptr || e->chunks == Chunks::kOne) return 1;
  return e->chunks == Chunks::kTwo ? 2 : virtual_stages;
}

const std::vector<std::string>& schedule_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& e : registry()) out.emplace_back(e.name);
    return out;
  }();
  return names;
}

PipelineSchedule generate_schedule(const ScheduleRequest& req) {
  if (req.pp < 1) throw ConfigError("pp", "must be >= 1");
  if (req.microbatches < 1) throw ConfigError("microbatches", "must be >= 1");
  if (req.virtual_stages < 1) throw ConfigError("virtual", "must be >= 1");
  if (req.iterations < 1) throw ConfigError("iterations", "must be >= 1");
  const int m = req.microbatches, k = req.iterations;
  const auto* entry = find_schedule(req.name);
  if (entry == nullptr) {
    std::string known;
    for (const auto& n : schedule_names()) known += (known.empty() ? "" : ", ") + n;
    throw ConfigError("pipeline.schedule", "'" + req.name + "' is not one of: " + known);
  }
  if (!req.chunk_groups.empty()) check_chunk_groups(req);
  if (entry->deals_iterations) return entry->generate(req);
  if (req.async) {
    if (req.name != "1f1b") {
      throw ConfigError(
          "async",
          "the asynchronous mode exists for 1f1b (PipeDream-2BW) and roundpipe, not for " + req.name);
    }
    // 2BW: one endless 1F1B stream; each stage steps its optimizer after its last backward of an
    // iteration and the next iteration's forwards run on the previous weights (two versions).
    ScheduleRequest stream = req;
    stream.microbatches = m * k;
    auto s = one_f_one_b(stream);
    s.microbatches = m;
    s.iterations = k;
    s.async = true;
    return s;
  }
  auto s = entry->generate(req);
  s.chunk_groups = req.chunk_groups;
  if (!req.partition.forward.empty()) {
    if (static_cast<int>(req.partition.forward.size()) != s.num_stages) {
      throw ConfigError("--stage-partition", req.name + " at pp " + std::to_string(req.pp) + " with " +
                                                 std::to_string(s.virtual_stages) +
                                                 " stage(s) per rank has " + std::to_string(s.num_stages) +
                                                 " stages, the partition names " +
                                                 std::to_string(req.partition.forward.size()));
    }
    // Activation shares in proportion to the layers a stage holds (a rank's even share is 1).
    const double per_rank =
        static_cast<double>(std::accumulate(req.partition.forward.begin(), req.partition.forward.end(), 0)) /
        req.pp;
    for (size_t st = 0; st < s.stage_share.size(); ++st) {
      s.stage_share[st] = per_rank > 0 ? req.partition.forward[st] / per_rank : 0.0;
    }
  }
  if (k == 1) return s;
  const auto first = s.ranks;
  for (int it = 1; it < k; ++it) {
    for (size_t r = 0; r < first.size(); ++r) {
      for (auto a : first[r]) {
        a.microbatch += it * m;
        s.ranks[r].push_back(a);
      }
    }
  }
  s.iterations = k;
  return s;
}

}  // namespace rondo

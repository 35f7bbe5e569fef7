// Schedules: generators against the closed forms, the validator against corrupted schedules,
// the simulator's memory accounting, CSV round trips and the Gantt chart.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <numeric>
#include <random>
#include <tuple>

#include "common/errors.h"
#include "orchestrator/simulate_command.h"
#include "pipeline/gantt_svg.h"
#include "pipeline/pipeline_schedule.h"
#include "pipeline/roundpipe_schedule.h"
#include "pipeline/schedule_csv.h"
#include "pipeline/schedule_simulator.h"
#include "pipeline/schedule_validator.h"

namespace rondo {
namespace {

struct Run {
  PipelineSchedule schedule;
  SimulationResult result;
};

// Uniform costs: every rank's share of layers takes F forward, B backward, W of it weight-grad.
Run run(const std::string& name, int p, int m, int v = 1, double f = 1, double b = 2, double w = 1) {
  const int chunks = name == "zbv" ? 2 : v;
  const auto costs = uniform_stage_costs(p * chunks, chunks, f, b, w);
  auto s = generate_schedule({name, p, m, chunks, costs});
  validate_schedule(s);
  auto r = simulate_schedule(s, costs);
  return {std::move(s), std::move(r)};
}

double max_of(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

TEST(Schedules, GpipeAndOneFOneBMatchTheClosedForm) {
  for (int p : {1, 2, 4, 8}) {
    for (int m : {1, 3, 8, 16}) {
      const double expect = (p - 1.0) / (m + p - 1.0);
      const auto g = run("gpipe", p, m), o = run("1f1b", p, m);
      EXPECT_NEAR(g.result.bubble_fraction, expect, 1e-9) << "gpipe p=" << p << " m=" << m;
      EXPECT_NEAR(o.result.bubble_fraction, expect, 1e-9) << "1f1b p=" << p << " m=" << m;
      for (int r = 0; r < p; ++r) {
        EXPECT_DOUBLE_EQ(o.result.peak_activations[static_cast<size_t>(r)], std::min(p - r, m))
            << "1f1b rank " << r;
        EXPECT_DOUBLE_EQ(g.result.peak_activations[static_cast<size_t>(r)], m) << "gpipe rank " << r;
      }
    }
  }
}

TEST(Schedules, InterleavedMatchesTheClosedForm) {
  for (int p : {2, 4, 8}) {
    for (int v : {2, 4}) {
      for (int m : {p, 2 * p, 4 * p}) {
        const auto i = run("interleaved_1f1b", p, m, v);
        EXPECT_NEAR(i.result.bubble_fraction, (p - 1.0) / (v * m + p - 1.0), 1e-9)
            << p << " " << v << " " << m;
      }
    }
  }
}

TEST(Schedules, ZeroBubbleH1MatchesTheClosedFormAtOneFOneBMemory) {
  for (int p : {2, 4, 8}) {
    for (int m : {p, 2 * p, 4 * p}) {
      const auto z = run("zb_h1", p, m), o = run("1f1b", p, m);
      EXPECT_NEAR(z.result.bubble_fraction, (p - 1.0) / (3.0 * m + p - 1.0), 1e-9) << "p=" << p << " m=" << m;
      // Delayed W's keep half their activations; no rank holds more than 1F1B's busiest rank.
      EXPECT_LE(max_of(z.result.peak_activations), max_of(o.result.peak_activations) + 1e-9);
    }
  }
}

TEST(Schedules, ZeroBubbleVBeatsH1WithinOneFOneBPeak) {
  for (int p : {2, 4, 8}) {
    for (int m : {2 * p, 4 * p}) {
      const auto v = run("zbv", p, m), h = run("zb_h1", p, m), o = run("1f1b", p, m);
      EXPECT_LT(v.result.bubble_fraction, h.result.bubble_fraction) << "p=" << p << " m=" << m;
      EXPECT_LE(max_of(v.result.peak_activations), max_of(o.result.peak_activations) + 1e-9);
    }
  }
}

TEST(Schedules, ReferencePointsAtP8M16) {
  EXPECT_NEAR(run("1f1b", 8, 16).result.bubble_fraction, 0.304, 5e-4);
  EXPECT_NEAR(run("interleaved_1f1b", 8, 16, 2).result.bubble_fraction, 0.179, 5e-4);
  EXPECT_NEAR(run("interleaved_1f1b", 8, 16, 4).result.bubble_fraction, 0.099, 5e-4);
  EXPECT_NEAR(run("zb_h1", 8, 16).result.bubble_fraction, 0.127, 5e-4);
  EXPECT_NEAR(analytic_bubble("zb_h1", 8, 16, 1, 1, 2, 1), 7.0 / 55.0, 1e-12);
}

TEST(Schedules, EveryScheduleValidatesForPUpTo16AndMUpTo64) {
  int checked = 0;
  for (int p = 1; p <= 16; ++p) {
    for (int m = 1; m <= 64; ++m) {
      for (const char* name : {"gpipe", "1f1b", "zb_h1", "zbv"}) {
        ASSERT_NO_THROW(validate_schedule(generate_schedule({name, p, m, 1, {}})))
            << name << " p=" << p << " m=" << m;
        ++checked;
      }
      if (m % p == 0) {
        ASSERT_NO_THROW(validate_schedule(generate_schedule({"interleaved_1f1b", p, m, 2, {}})))
            << p << " " << m;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 4000);
}

TEST(Schedules, GreedyZeroBubbleNeverStallsOnUnevenCostsAndSlowLinks) {
  std::mt19937 gen(42);
  std::uniform_real_distribution<double> cost(0.2, 3.0), latency(0.0, 1.0);
  for (int trial = 0; trial < 200; ++trial) {
    const int p = 1 + static_cast<int>(gen() % 8), m = 1 + static_cast<int>(gen() % 24);
    for (const char* name : {"zb_h1", "zbv"}) {
      const int stages = std::string(name) == "zbv" ? 2 * p : p;
      StageCosts c;
      for (int st = 0; st < stages; ++st) {
        c.f.push_back(cost(gen));
        c.w.push_back(cost(gen));
        c.b.push_back(c.w.back() + cost(gen));
      }
      c.p2p_latency = latency(gen);
      PipelineSchedule s;
      ASSERT_NO_THROW(s = generate_schedule({name, p, m, 1, c})) << name << " p=" << p << " m=" << m;
      ASSERT_NO_THROW(validate_schedule(s)) << name << " p=" << p << " m=" << m;
    }
  }
}

TEST(Schedules, InterleavingNeedsMicrobatchesDivisibleByPp) {
  try {
    generate_schedule({"interleaved_1f1b", 4, 6, 2, {}});
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "microbatches");
  }
  EXPECT_THROW(generate_schedule({"no_such", 4, 8, 1, {}}), ConfigError);
}

std::string invalid_reason(const PipelineSchedule& s) {
  try {
    validate_schedule(s);
  } catch (const PlanError& e) {
    return e.what();
  }
  return "";
}

// Chunked training: a group's chunks forward in order and backward in reverse on every stage, so
// the same-stage dependencies hold; 1F1B keeps at most p - r - 1 + chunk_group forwards in flight.
TEST(ChunkGroups, ForwardInOrderBackwardInReverseOnEveryStage) {
  for (const std::string name : {"gpipe", "1f1b"}) {
    for (int p = 1; p <= 5; ++p) {
      for (int g = 2; g <= 4; ++g) {
        for (int groups = 1; groups <= 3; ++groups) {
          ScheduleRequest req{name, p, g * groups, 1, {}};
          req.chunk_groups = ChunkGroups::uniform(g * groups, g);
          const auto s = generate_schedule(req);
          SCOPED_TRACE(name + " p=" + std::to_string(p) + " g=" + std::to_string(g) +
                       " groups=" + std::to_string(groups));
          ASSERT_NO_THROW(validate_schedule(s));
          EXPECT_EQ(s.chunk_groups.largest(), g);
          for (int r = 0; r < p; ++r) {
            std::map<std::pair<ComputeKind, int>, std::vector<int>> order;  // (kind, group) -> chunks
            int in_flight = 0, peak = 0;
            for (const auto& a : s.ranks[static_cast<size_t>(r)]) {
              order[{a.kind, a.microbatch / g}].push_back(a.microbatch % g);
              in_flight += a.kind == ComputeKind::kF ? 1 : -1;
              peak = std::max(peak, in_flight);
            }
            for (int k = 0; k < groups; ++k) {
              std::vector<int> ascending(static_cast<size_t>(g));
              for (int i = 0; i < g; ++i) ascending[static_cast<size_t>(i)] = i;
              EXPECT_EQ((order[{ComputeKind::kF, k}]), ascending);
              std::reverse(ascending.begin(), ascending.end());
              EXPECT_EQ((order[{ComputeKind::kB, k}]), ascending);
            }
            if (name == "1f1b") {
              EXPECT_LE(peak, std::min(p - r - 1 + g, g * groups)) << "rank " << r;
            }
          }
        }
      }
    }
  }
}

// A step's own chunks (worker/chunked_step_model.h): long sequences' groups of several chunks
// between standalone ones, in any mix. Both schedules stay valid, run each group's forwards in
// order and its backwards in reverse, and 1F1B keeps no more forwards in flight than its own
// warm-up after the largest group.
TEST(ChunkGroups, StepsOfMixedGroupsRunValidSchedules) {
  const std::vector<std::vector<int>> mixes = {
      {1, 1, 1}, {5}, {1, 3, 1, 1, 2}, {4, 1, 1, 1, 1, 1, 1, 3}, {2, 1, 6, 1}, {1, 1, 1, 1, 1, 1, 7}};
  for (const std::string name : {"gpipe", "1f1b"}) {
    for (int p = 1; p <= 4; ++p) {
      for (const auto& sizes : mixes) {
        const ChunkGroups groups(sizes);
        ScheduleRequest req{name, p, groups.microbatches(), 1, {}};
        req.chunk_groups = groups;
        const auto s = generate_schedule(req);
        SCOPED_TRACE(name + " p=" + std::to_string(p) + " groups=" + ::testing::PrintToString(sizes));
        ASSERT_NO_THROW(validate_schedule(s));
        EXPECT_EQ(s.chunk_groups.sizes(), sizes);
        for (int r = 0; r < p; ++r) {
          std::vector<int> forwards, backwards;
          int in_flight = 0, peak = 0;
          for (const auto& a : s.ranks[static_cast<size_t>(r)]) {
            (a.kind == ComputeKind::kF ? forwards : backwards).push_back(a.microbatch);
            in_flight += a.kind == ComputeKind::kF ? 1 : -1;
            peak = std::max(peak, in_flight);
          }
          std::vector<int> ascending(static_cast<size_t>(groups.microbatches()));
          std::iota(ascending.begin(), ascending.end(), 0);
          EXPECT_EQ(forwards, ascending);
          EXPECT_EQ(backwards, groups.backward_order());
          if (name == "1f1b") {
            EXPECT_LE(peak, std::min(p - r - 1 + groups.largest(), groups.microbatches())) << "rank " << r;
          }
        }
      }
    }
  }
  EXPECT_EQ(ChunkGroups({1, 3, 2}).backward_order(), (std::vector<int>{0, 3, 2, 1, 5, 4}));
  EXPECT_THROW(ChunkGroups({2, 0}), std::invalid_argument);
}

TEST(ChunkGroups, PlainOneFOneBBreaksTheChunkOrderAndOtherSchedulesAreRefused) {
  // 1F1B's own order runs a group's first backward right after its first forward on the last
  // stage: with the chunks' dependencies that cannot progress.
  auto s = generate_schedule({"1f1b", 2, 4, 1, {}});
  s.chunk_groups = ChunkGroups::uniform(4, 2);
  EXPECT_NE(invalid_reason(s).find("rule 4"), std::string::npos) << invalid_reason(s);
  for (const std::string name : {"interleaved_1f1b", "zb_h1", "zbv", "roundpipe", "looped_bfs"}) {
    ScheduleRequest req{name, 2, 4, 2, {}};
    req.chunk_groups = ChunkGroups::uniform(4, 2);
    try {
      generate_schedule(req);
      ADD_FAILURE() << name << " accepted chunk groups";
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.key(), "data.chunk_size") << name;
    }
  }
  ScheduleRequest odd{"1f1b", 2, 5, 1, {}};
  odd.chunk_groups = ChunkGroups::uniform(4, 2);
  EXPECT_THROW(generate_schedule(odd), ConfigError);
}

TEST(Validator, RefusesADroppedAction) {
  auto s = generate_schedule({"1f1b", 4, 8, 1, {}});
  s.ranks[2].erase(s.ranks[2].begin() + 3);
  EXPECT_NE(invalid_reason(s).find("rule 2"), std::string::npos) << invalid_reason(s);
}

TEST(Validator, RefusesADuplicatedAction) {
  auto s = generate_schedule({"zb_h1", 4, 8, 1, {}});
  s.ranks[1].push_back(s.ranks[1].front());
  EXPECT_NE(invalid_reason(s).find("rule 2"), std::string::npos) << invalid_reason(s);
}

TEST(Validator, RefusesBackwardBeforeItsForwardOnARank) {
  auto s = generate_schedule({"gpipe", 2, 4, 1, {}});
  std::swap(s.ranks[1][0], s.ranks[1][4]);  // 1B0 now precedes 1F0
  EXPECT_NE(invalid_reason(s).find("rule 3"), std::string::npos) << invalid_reason(s);
}

TEST(Validator, RefusesAnOrderThatDeadlocks) {
  auto u = generate_schedule({"1f1b", 2, 2, 1, {}});
  EXPECT_EQ(invalid_reason(u), "");
  // Rank 0 runs 0F1 only after 0B0, while rank 1 runs 1F1 before 1B0: 0B0 needs 1B0, which
  // waits behind 1F1, which needs 0F1, which waits behind 0B0.
  u.ranks[0] = {
      {ComputeKind::kF, 0, 0}, {ComputeKind::kB, 0, 0}, {ComputeKind::kF, 0, 1}, {ComputeKind::kB, 0, 1}};
  u.ranks[1] = {
      {ComputeKind::kF, 1, 0}, {ComputeKind::kF, 1, 1}, {ComputeKind::kB, 1, 0}, {ComputeKind::kB, 1, 1}};
  const auto why = invalid_reason(u);
  EXPECT_NE(why.find("rule 4"), std::string::npos) << why;
  EXPECT_NE(why.find("rank 0 waits at 0B0"), std::string::npos) << why;
}

TEST(Simulator, CommunicationShowsAsExposedTimeAndLengthensTheStep) {
  auto costs = uniform_stage_costs(4, 1, 1, 2, 1);
  const auto s = generate_schedule({"1f1b", 4, 8, 1, costs});
  const auto base = simulate_schedule(s, costs);
  costs.p2p_latency = 0.25;
  const auto slow = simulate_schedule(s, costs);
  EXPECT_GT(slow.makespan, base.makespan);
  EXPECT_DOUBLE_EQ(base.exposed_comm, 0.0);
  EXPECT_GT(slow.exposed_comm, 0.0);
}

TEST(Simulator, SixtyFourRanksOfInterleavedTimeQuickly) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = run("interleaved_1f1b", 64, 1024, 4);
  EXPECT_NEAR(r.result.bubble_fraction, 63.0 / (4 * 1024 + 63.0), 1e-9);
  std::cout << "p=64 m=1024 v=4: " << r.schedule.num_actions()
            << " actions generated, validated and simulated in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s\n";
}

TEST(Interchange, CsvRoundTripsExactly) {
  for (const char* name : {"gpipe", "1f1b", "interleaved_1f1b", "zb_h1", "zbv"}) {
    const auto s = run(name, 4, 8, 2).schedule;
    const std::string csv = schedule_to_csv(s);
    const auto back = schedule_from_csv(csv, name);
    EXPECT_EQ(back.ranks, s.ranks) << name;
    EXPECT_EQ(back.num_stages, s.num_stages) << name;
    EXPECT_EQ(back.split_backward, s.split_backward) << name;
    EXPECT_EQ(schedule_to_csv(back), csv) << name;
  }
  EXPECT_EQ(schedule_to_csv(generate_schedule({"1f1b", 2, 2, 1, {}})),
            "0F0,0F1,,0B0,,0B1\n,1F0,1B0,1F1,1B1\n");
}

TEST(Interchange, DurationsRoundTripIntoStageCosts) {
  StageCosts costs;
  costs.f = {1.0, 1.5, 2.0};
  costs.b = {2.0, 3.0, 4.5};
  costs.w = {1.0, 1.0, 2.0};
  auto s = generate_schedule({"zb_h1", 3, 6, 1, costs});
  const auto r = simulate_schedule(s, costs);
  const auto back = stage_costs_from_csv(s, durations_to_csv(s, r));
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_NEAR(back.f[i], costs.f[i], 1e-9);
    EXPECT_NEAR(back.b[i], costs.b[i], 1e-9);
    EXPECT_NEAR(back.w[i], costs.w[i], 1e-9);
  }
  EXPECT_NEAR(simulate_schedule(s, back).makespan, r.makespan, 1e-9);
}

TEST(Interchange, BadCellsAreNamed) {
  try {
    schedule_from_csv("0F0,0B0\n1F0,1X0\n", "bad");
    FAIL() << "accepted";
  } catch (const PlanError& e) {
    EXPECT_NE(std::string(e.what()).find("row 2 column 2"), std::string::npos) << e.what();
  }
}

TEST(Gantt, DrawsEveryOpOnItsRank) {
  const auto r = run("zb_h1", 4, 8);
  const std::string svg = gantt_svg(r.schedule, r.result);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  size_t ops = 0;
  for (size_t at = svg.find("<title>rank "); at != std::string::npos; at = svg.find("<title>rank ", at + 1))
    ++ops;
  EXPECT_EQ(ops, r.schedule.num_actions());
  EXPECT_NE(svg.find("rank 3: 3W7"), std::string::npos);
}

TEST(StageCosts, PartitionMinimisesTheSlowestStageUnderAMemoryCap) {
  // Embedding 1, eight layers of 1, LM head 3.
  std::vector<double> layers = {1, 1, 1, 1, 1, 1, 1, 1, 1, 3};
  auto bounds = partition_min_max(layers, 4);
  double worst = 0;
  for (size_t s = 0; s + 1 < bounds.size(); ++s) {
    double sum = 0;
    for (int l = bounds[s]; l < bounds[s + 1]; ++l) sum += layers[static_cast<size_t>(l)];
    worst = std::max(worst, sum);
  }
  EXPECT_DOUBLE_EQ(worst, 3.0);
  EXPECT_EQ(bounds.front(), 0);
  EXPECT_EQ(bounds.back(), 10);
  // Memory cap of 2 layers' worth: the four stages cannot hold ten layers.
  EXPECT_THROW(partition_min_max(layers, 4, std::vector<double>(10, 1.0), 2.0), PlanError);
}

TEST(Layout, EvenPartitionPlacesEmbeddingAndHead) {
  const auto st = partition_layers_evenly(8, 2, 2);
  ASSERT_EQ(st.size(), 4u);
  EXPECT_TRUE(st[0].has_embedding);
  EXPECT_TRUE(st[3].has_lm_head);
  EXPECT_EQ(st[2].first_layer, 4);
}

}  // namespace
}  // namespace rondo

namespace rondo {
namespace {

TEST(AsyncSchedules, PipeDream2BWHidesFillAndDrainInTheSteadyState) {
  const int p = 4, m = 8;
  const auto costs = uniform_stage_costs(p, 1, 1, 2, 1);
  ScheduleRequest sync{"1f1b", p, m, 1, costs};
  sync.iterations = 6;
  ScheduleRequest async = sync;
  async.async = true;
  const auto s = generate_schedule(sync), a = generate_schedule(async);
  validate_schedule(s);
  validate_schedule(a);
  const auto rs = simulate_schedule(s, costs), ra = simulate_schedule(a, costs);
  // Synchronous iterations repeat their bubble; 2BW's steady state has none with uniform costs.
  EXPECT_NEAR(steady_state_bubble(s, rs), (p - 1.0) / (m + p - 1.0), 1e-9);
  EXPECT_NEAR(steady_state_bubble(a, ra), 0.0, 1e-9);
  EXPECT_LT(ra.makespan, rs.makespan);
  // Same activations in flight as 1F1B.
  EXPECT_DOUBLE_EQ(max_of(ra.peak_activations), p);
  ScheduleRequest bad = async;
  bad.name = "gpipe";
  EXPECT_THROW(generate_schedule(bad), ConfigError);
}

}  // namespace
}  // namespace rondo

namespace rondo {
namespace {

Run run_layers(const std::string& name, int p, int m, const std::vector<double>& layers, bool async = false,
               int iterations = 1, const std::string& dispatch = "rounds") {
  ScheduleRequest req{name, p, m, 1};
  req.roundpipe_dispatch = dispatch;
  req.async = async;
  req.iterations = iterations;
  req.layer_costs = layers;
  if (name != "roundpipe") req.costs = stage_costs_from_layers(layers, partition_min_max(layers, p));
  auto s = generate_schedule(req);
  validate_schedule(s);
  const StageCosts& costs = s.derived_costs.empty() ? req.costs : s.derived_costs;
  auto r = simulate_schedule(s, costs);
  return {std::move(s), std::move(r)};
}

// Embedding, transformer layers of 1, and an LM head 3x a layer.
std::vector<double> uneven_model(int transformer_layers) {
  std::vector<double> layers(static_cast<size_t>(transformer_layers) + 2, 1.0);
  layers.back() = 3.0;
  return layers;
}

TEST(RoundPipe, AsyncSteadyStateBubbleIsAtMostHalfOfSyncOneFOneB) {
  for (auto [p, m, layers] : {std::tuple{4, 8, 8}, std::tuple{4, 16, 14}, std::tuple{8, 16, 30}}) {
    const auto model = uneven_model(layers);
    const auto one = run_layers("1f1b", p, m, model);
    // The earliest-free dispatch interleaves the next iteration's forwards with the backwards.
    const auto rp = run_layers("roundpipe", p, m, model, /*async=*/true, /*iterations=*/4, "earliest_free");
    const double rp_bubble = steady_state_bubble(rp.schedule, rp.result);
    EXPECT_LE(rp_bubble, 0.5 * one.result.bubble_fraction) << "p=" << p << " m=" << m;
  }
}

TEST(RoundPipe, WorkersHoldOneWorkingSetWhateverTheMicrobatchCount) {
  const auto model = uneven_model(14);
  const double peak4 = max_of(run_layers("roundpipe", 4, 4, model).result.peak_activations);
  for (int m : {8, 16, 64}) {
    const auto r = run_layers("roundpipe", 4, m, model);
    EXPECT_DOUBLE_EQ(max_of(r.result.peak_activations), peak4) << "m=" << m;
    EXPECT_LT(max_of(r.result.peak_activations),
              max_of(run_layers("1f1b", 4, m, model).result.peak_activations));
  }
}

TEST(RoundPipe, RecomputationIsBusyTimeAndLengthensTheStep) {
  const auto model = uneven_model(14);
  const int m = 8;
  const auto one = run_layers("1f1b", 4, m, model), rp = run_layers("roundpipe", 4, m, model);
  double busy_one = 0, busy_rp = 0;
  for (double b : one.result.busy) busy_one += b;
  for (double b : rp.result.busy) busy_rp += b;
  // RoundPipe recomputes every forward layer except the fused tail's: more busy time, not bubble.
  const auto part = roundpipe_partition(model, 4);
  double recomputed = 0;
  for (int l = 0; l < part.backward_bounds[1]; ++l) recomputed += model[static_cast<size_t>(l)];
  EXPECT_NEAR(busy_rp - busy_one, m * recomputed, 1e-9);
}

TEST(RoundPipe, BackwardStagesAreSmallerAndTheFirstFusesTheTail) {
  const auto part = roundpipe_partition(uneven_model(14), 4);  // 16 layers, total 18, target 4.5
  ASSERT_GE(part.backward_bounds.size(), 3u);
  EXPECT_EQ(part.backward_bounds[0], 16);
  EXPECT_EQ(part.backward_bounds[1], 15);     // the LM head alone: 3 * 3 > 4.5 with one more layer
  EXPECT_EQ(part.forward_bounds.back(), 15);  // the forward partition stops where the tail starts
  EXPECT_GT(part.costs.b.size(), part.costs.f.size());
}

TEST(RoundPipe, SynchronousIterationsWaitForEachOther) {
  const auto model = uneven_model(8);
  // Fewer microbatches than workers: the backward chain leaves gaps that only the next
  // iteration's forwards can fill, which the synchronous mode forbids.
  const auto sync = run_layers("roundpipe", 4, 3, model, false, 6),
             async = run_layers("roundpipe", 4, 3, model, true, 6);
  EXPECT_LT(steady_state_bubble(async.schedule, async.result),
            steady_state_bubble(sync.schedule, sync.result));
}

TEST(RoundPipe, ValidatesForPUpTo16AndMUpTo64) {
  for (int p = 1; p <= 16; ++p) {
    for (int m = 1; m <= 64; ++m) {
      for (const char* dispatch : {"rounds", "earliest_free"}) {
        ScheduleRequest req{"roundpipe", p, m, 1};
        req.roundpipe_dispatch = dispatch;
        ASSERT_NO_THROW(validate_schedule(generate_schedule(req))) << p << " " << m << " " << dispatch;
      }
    }
  }
}

// RoundPipe's dispatch: in the first round, forward stage s runs on worker s mod p for the
// round's microbatches and backward stage k on worker (forward stages + k) mod p.
TEST(RoundPipe, RoundsPlaceStageSOnWorkerSAndTheBackwardAfterTheForward) {
  const int p = 4, m = 4;
  ScheduleRequest req{"roundpipe", p, m, 1};
  req.partition = {{2, 2, 2}, {0, 1, 1, 1, 1, 1, 1}};
  req.costs = stage_costs_from_layer_times({1.0, 2.0, 0.5, 1.0, 0.0, true}, req.partition);
  const auto s = generate_schedule(req);
  validate_schedule(s);
  std::map<std::pair<int, int>, int> worker;  // (kind 0 F / 1 B, stage) -> worker, for microbatch 0
  for (int r = 0; r < p; ++r) {
    for (const auto& a : s.ranks[static_cast<size_t>(r)]) {
      if (a.microbatch == 0) worker[{a.kind == ComputeKind::kF ? 0 : 1, a.stage}] = r;
    }
  }
  for (int st = 0; st < 3; ++st) EXPECT_EQ((worker[{0, st}]), st % p) << "forward stage " << st;
  for (int k = 0; k < 7; ++k) EXPECT_EQ((worker[{1, k}]), (3 + k) % p) << "backward stage " << k;
  // A round's microbatches of one stage run back to back on one worker.
  const auto& w0 = s.ranks[0];
  for (int j = 0; j < m; ++j) EXPECT_EQ(w0[static_cast<size_t>(j)], (ComputeAction{ComputeKind::kF, 0, j}));
}

TEST(RoundPipe, RecomputationRunsAheadOfTheGradient) {
  // Backward stage 1's recomputation (its lead) may start before backward stage 0's gradient
  // arrives, so the step is shorter than without that overlap.
  StagePartition part{{2}, {1, 1}};
  const LayerTimes t{1.0, 2.0, 0.0, 0.0, 0.0, true};
  const auto costs = stage_costs_from_layer_times(t, part);
  ASSERT_EQ(costs.b_lead.size(), 2u);
  EXPECT_DOUBLE_EQ(costs.b_lead[0], 0.0);  // the head takes no time here
  EXPECT_DOUBLE_EQ(costs.b_lead[1], 1.0);  // recompute one layer
  EXPECT_DOUBLE_EQ(costs.b[1], 3.0);
  ScheduleRequest req{"roundpipe", 3, 1, 1};
  req.partition = part;
  req.costs = costs;
  const auto s = generate_schedule(req);
  const auto r = simulate_schedule(s, s.derived_costs);
  // F (2) on worker 0, B0 (2) on worker 1 from t=2, B1 on worker 2: recompute from t=3, backward
  // proper from t=4 (when B0's gradient is there) to t=6.
  EXPECT_DOUBLE_EQ(r.makespan, 6.0);
}

TEST(RoundPipe, WeightsCrossTheHostLinkPrefetchedDuringThePreviousTask) {
  // One worker, two microbatches: forward stage (2 layers) then backward stage (2 layers, fused
  // head of no cost). Each layer 1 byte over a link of 1 byte per unit: uploads take 2.
  ScheduleRequest req{"roundpipe", 1, 2, 1};
  req.partition = {{2}, {2}};
  LayerTimes t{1.0, 1.0, 0.0, 0.0, 0.0, true};
  t.layer_bytes = 1.0;
  t.host_bandwidth = 1.0;
  req.costs = stage_costs_from_layer_times(t, req.partition);
  const auto s = generate_schedule(req);
  const auto r = simulate_schedule(s, s.derived_costs);
  // Upload F [0,2]; F [2,4], [4,6]; the backward's upload starts with the second F [4,6];
  // B (the fused stage: no recomputation) [6,8], [8,10]; gradients home [10,12]. Only the first
  // upload is exposed.
  EXPECT_DOUBLE_EQ(r.makespan, 12.0);
  EXPECT_DOUBLE_EQ(r.exposed_host_transfer, 2.0);
}

TEST(RoundPipe, RoundsUploadEachStageOncePerRoundWhereEarliestFreeUploadsPerTask) {
  ScheduleRequest req{"roundpipe", 4, 8, 1};
  req.partition = {{2, 2, 2, 2}, {0, 1, 1, 1, 1, 1, 1, 1, 1}};
  LayerTimes t{1.0, 2.0, 0.5, 1.0, 0.1, true};
  t.layer_bytes = 1.0;
  t.head_bytes = 1.0;
  t.host_bandwidth = 0.25;  // an upload of a 2-layer stage takes 8: longer than its task
  req.costs = stage_costs_from_layer_times(t, req.partition);
  const auto exposed = [&](const std::string& dispatch) {
    req.roundpipe_dispatch = dispatch;
    const auto s = generate_schedule(req);
    return simulate_schedule(s, s.derived_costs).exposed_host_transfer;
  };
  EXPECT_LT(exposed("rounds"), exposed("earliest_free"));
}

TEST(LoopedBfs, OneStagePerRankIsGpipeAndEveryShapeValidates) {
  for (int p : {2, 4, 8}) {
    for (int m : {1, 3, 8, 16}) {
      EXPECT_NEAR(run("looped_bfs", p, m, 1).result.bubble_fraction, (p - 1.0) / (m + p - 1.0), 1e-9);
      for (int v : {2, 4}) ASSERT_NO_THROW(run("looped_bfs", p, m, v)) << p << " " << m << " " << v;
    }
  }
  // Breadth first: all forwards of the rank's first stage, then of its second, ...
  const auto s = run("looped_bfs", 2, 3, 2).schedule;
  const std::vector<ComputeAction> rank1 = {
      {ComputeKind::kF, 1, 0}, {ComputeKind::kF, 1, 1}, {ComputeKind::kF, 1, 2}, {ComputeKind::kF, 3, 0},
      {ComputeKind::kF, 3, 1}, {ComputeKind::kF, 3, 2}, {ComputeKind::kB, 3, 2}, {ComputeKind::kB, 3, 1},
      {ComputeKind::kB, 3, 0}, {ComputeKind::kB, 1, 2}, {ComputeKind::kB, 1, 1}, {ComputeKind::kB, 1, 0}};
  EXPECT_EQ(s.ranks[1], rank1);
}

TEST(BubbleBreakdown, PartsAddUpToTheBubble) {
  for (const char* name : {"gpipe", "1f1b", "interleaved_1f1b", "looped_bfs", "zb_h1", "zbv"}) {
    for (int p : {2, 4, 8}) {
      const auto r = run(name, p, 2 * p, chunks_per_rank(name, 2));
      const auto costs = uniform_stage_costs(r.schedule.num_stages, r.schedule.virtual_stages, 1, 2, 1);
      const auto parts = bubble_breakdown(r.schedule, costs, r.result);
      const double bubble = r.result.bubble_fraction * r.result.makespan * p;
      EXPECT_NEAR(parts.fill + parts.phase_switch + parts.drain + parts.intra, bubble, 1e-9)
          << name << " " << p;
      // Rank r starts after r forwards of its first stage.
      double fill = 0;
      for (int q = 0; q < p; ++q) fill += r.result.timeline[static_cast<size_t>(q)].front().start;
      EXPECT_DOUBLE_EQ(parts.fill, fill);
    }
  }
  // 1F1B (F=1, B=2 per stage): after its (p-r)-th forward, rank r waits for the first gradient
  // to come back through the p-1-r later ranks, one B each.
  const int p = 4;
  const auto o = run("1f1b", p, 8);
  const auto parts = bubble_breakdown(o.schedule, uniform_stage_costs(p, 1, 1, 2, 1), o.result);
  double expect = 0;
  for (int r = 0; r < p; ++r) expect += 2.0 * (p - 1 - r);
  EXPECT_NEAR(parts.phase_switch, expect, 1e-9);
}

// RoundPipe's atoms: the embedding, each block, the head; a range of atoms is a stage and back.
TEST(ModelAtoms, RangesOfAtomsAreStagesAndBack) {
  const auto atoms = model_atoms(3);
  ASSERT_EQ(atoms.size(), 5u);
  EXPECT_TRUE(atoms[0].has_embedding && atoms[0].num_layers == 0);
  EXPECT_TRUE(atoms[4].has_lm_head && atoms[4].num_layers == 0);
  for (int a = 1; a <= 3; ++a) EXPECT_EQ(atoms[static_cast<size_t>(a)].first_layer, a - 1);
  for (int first = 0; first < 5; ++first) {
    for (int end = first + 1; end <= 5; ++end) {
      const auto st = stage_of_atoms(7, first, end, 3);
      EXPECT_EQ(st.index, 7);
      EXPECT_EQ(atoms_of(st, 3), std::make_pair(first, end)) << first << ".." << end;
    }
  }
  const auto whole = stage_of_atoms(0, 0, 5, 3);
  EXPECT_TRUE(whole.has_embedding && whole.has_lm_head && whole.first_layer == 0 && whole.num_layers == 3);
}

}  // namespace
}  // namespace rondo

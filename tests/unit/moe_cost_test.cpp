// FSMoE's cost model (parallelism/moe_cost.h): the alpha-beta fit, the pipeline's predicted time
// against its formula worked by hand, the degree choice, and moe_costs.json read back; and the
// event simulation the choice is judged against (parallelism/moe_pipeline_sim.h).
#include <gtest/gtest.h>

#include <numeric>

#include "common/errors.h"
#include "parallelism/moe_cost.h"
#include "parallelism/moe_pipeline_sim.h"

namespace rondo {
namespace {

TEST(MoeCost, FitRecoversALineAndClampsAtZero) {
  const auto c = LinearCost::fit({{1, 3}, {2, 5}, {4, 9}});
  EXPECT_NEAR(c.alpha_s, 1, 1e-12);
  EXPECT_NEAR(c.beta_s, 2, 1e-12);
  const auto falling = LinearCost::fit({{1, 1}, {2, 0.5}});
  EXPECT_EQ(falling.beta_s, 0);
  EXPECT_NEAR(falling.alpha_s, 0.75, 1e-12);
  EXPECT_EQ(LinearCost::fit({}).at(10), 0);
}

MoeCosts costs(double a2a_alpha, double a2a_beta, double expert_beta) {
  return {.alltoall = {a2a_alpha, a2a_beta},
          .expert = {0, expert_beta},
          .expert_backward = {0, 2 * expert_beta},
          .source = ""};
}

const MoeLayerWork kWork{.rows = 1024, .hidden = 8, .ffn = 16, .local_experts = 2, .members = 2};

TEST(MoeCost, PipelineFormulaWorkedByHand) {
  // Per exchange at degree 1: 1024 rows * 8 * 4 bytes * (1/2 off the rank) = 16384 bytes.
  const auto c = costs(1e-3, 1e-6, 1e-9);
  const double exchange1 = 1e-3 + 1e-6 * 16384;
  const double compute1 = 4.0 * 1024 * 8 * 16 * 1e-9;  // both experts' forward, all rows
  EXPECT_NEAR(predict_expert_pipeline(c, kWork, 1, false), 2 * exchange1 + compute1, 1e-12);
  // Degree 2: D + max(C, D) + max(C, B) + B, each a half.
  const double exchange2 = 1e-3 + 1e-6 * 8192, compute2 = compute1 / 2;
  EXPECT_NEAR(predict_expert_pipeline(c, kWork, 2, false), 2 * exchange2 + 2 * std::max(compute2, exchange2),
              1e-12);
  // Degree 4: the middle chunks carry a dispatch and a combine on the link, their bytes one after
  // the other, their latencies side by side.
  const double exchange4 = 1e-3 + 1e-6 * 4096, compute4 = compute1 / 4, both4 = 1e-3 + 2 * 1e-6 * 4096;
  EXPECT_NEAR(predict_expert_pipeline(c, kWork, 4, false),
              2 * exchange4 + 2 * std::max(compute4, exchange4) + 2 * std::max(compute4, both4), 1e-12);
  EXPECT_NEAR(predict_expert_pipeline(c, kWork, 1, true), 2 * exchange1 + 2 * compute1, 1e-12);
  // One rank alone exchanges nothing.
  MoeLayerWork alone = kWork;
  alone.members = 1;
  EXPECT_NEAR(predict_expert_pipeline(c, alone, 1, false), compute1, 1e-12);
}

TEST(MoeCost, ChoosesOverlapWhenTheExchangeIsLongAndNotWhenLatencyDominates) {
  // Bandwidth-bound exchanges as long as the compute: pipelining hides most of them.
  const auto slow_link = choose_moe_degrees(costs(0, 1e-6, 1.5e-8), kWork);
  EXPECT_GT(slow_link.forward, 1);
  EXPECT_GT(slow_link.backward, 1);
  EXPECT_LT(slow_link.forward_s.at(slow_link.forward), slow_link.forward_s.at(1));
  // Latency-bound exchanges: every chunk pays it again.
  const auto latency = choose_moe_degrees(costs(1e-2, 0, 1e-12), kWork);
  EXPECT_EQ(latency.forward, 1);
  EXPECT_EQ(latency.backward, 1);
  // Within 2% of the fastest, the smaller degree wins.
  const auto flat = choose_moe_degrees(costs(0, 0, 1e-9), kWork);
  EXPECT_EQ(flat.forward, 1);
}

TEST(MoeCost, EveryAtomCallsEachExpertAgainAndPaysItsAlpha) {
  MoeCosts c = costs(0, 0, 0);
  c.expert = {1e-3, 0};
  MoeLayerWork alone = kWork;
  alone.members = 1;
  // Two local experts, two chunks: one call each per chunk, or two when cut into four atoms.
  EXPECT_NEAR(predict_expert_pipeline(c, alone, 2, false), 2 * 2 * 1e-3, 1e-15);
  EXPECT_NEAR(predict_expert_pipeline(c, alone, 2, false, 4), 2 * 2 * 2 * 1e-3, 1e-15);
  EXPECT_NEAR(simulate_expert_pipeline(c, alone, 2, false, 4), 2 * 2 * 2 * 1e-3, 1e-15);
}

TEST(MoeCost, ChoosesThePairWithFewestChunksWithinTwoPercentOfEveryPairUpToSixteen) {
  for (const auto& c : {costs(0, 1e-6, 1.5e-8), costs(2e-5, 1e-6, 1.5e-8), costs(1e-2, 0, 1e-12)}) {
    const auto choice = choose_moe_degrees(c, kWork);
    double best = 1e300;
    for (int f = 1; f <= 16; ++f) {
      for (int b = 1; b <= 16; ++b) {
        const int atoms = std::lcm(f, b);
        best = std::min(best, predict_expert_pipeline(c, kWork, f, false, atoms) +
                                  predict_expert_pipeline(c, kWork, b, true, atoms));
      }
    }
    const int atoms = std::lcm(choice.forward, choice.backward);
    const double chosen = predict_expert_pipeline(c, kWork, choice.forward, false, atoms) +
                          predict_expert_pipeline(c, kWork, choice.backward, true, atoms);
    EXPECT_NEAR(choice.seconds, chosen, 1e-15);
    EXPECT_LE(chosen, best * 1.02);
    EXPECT_EQ(choice.forward_s.size(), 16u);
  }
}

TEST(MoePipelineSim, OneChunkIsDispatchComputeCombine) {
  const auto c = costs(1e-3, 1e-6, 1e-9);
  const double exchange = 1e-3 + 1e-6 * 16384, compute = 4.0 * 1024 * 8 * 16 * 1e-9;
  EXPECT_NEAR(simulate_expert_pipeline(c, kWork, 1, false), 2 * exchange + compute, 1e-12);
  EXPECT_NEAR(simulate_expert_pipeline(c, kWork, 1, true), 2 * exchange + 2 * compute, 1e-12);
}

TEST(MoePipelineSim, TransfersInFlightShareTheLinkButNotTheirLatency) {
  // Bandwidth only, no compute: the link is never idle after the first dispatch, a dispatch and a
  // combine in flight together each at half rate; 2 * bytes / bandwidth in all, at any degree, as
  // the closed form says too.
  const auto bandwidth = costs(0, 1e-6, 0);
  const double all = 2 * 1e-6 * 16384;  // both directions' bytes at degree 1
  for (int d : {1, 2, 3, 8, 16}) {
    EXPECT_NEAR(simulate_expert_pipeline(bandwidth, kWork, d, false), all, 1e-12) << d;
    EXPECT_NEAR(predict_expert_pipeline(bandwidth, kWork, d, false), all, 1e-12) << d;
  }
  // Latency only: chunk 1's dispatch and chunk 0's combine wait their alpha together (3 alpha at
  // degree 2), where the closed form serialises them (4 alpha).
  const auto latency = costs(1e-3, 0, 0);
  EXPECT_NEAR(simulate_expert_pipeline(latency, kWork, 2, false), 3e-3, 1e-12);
  EXPECT_NEAR(predict_expert_pipeline(latency, kWork, 2, false), 4e-3, 1e-12);
}

TEST(MoePipelineSim, BruteForceFindsThePairItSimulatesFastest) {
  const auto c = costs(2e-5, 1e-6, 1.5e-8);
  const auto best = best_simulated_degrees(c, kWork, 16);
  EXPECT_NEAR(best.seconds, simulate_degree_pair(c, kWork, best.forward, best.backward), 1e-15);
  for (int f = 1; f <= 16; ++f) EXPECT_LE(best.seconds, simulate_degree_pair(c, kWork, f, f) + 1e-15);
  EXPECT_LT(best.seconds, simulate_degree_pair(c, kWork, 1, 1));
}

TEST(MoeCost, CostFileRoundTripsAndABadOneIsRefusedNamingTheKey) {
  auto c = costs(1e-4, 2e-9, 3e-11);
  c.source = "profiled";
  const auto back = MoeCosts::from_json(c.to_json(), "moe.cost_file");
  EXPECT_EQ(back.alltoall.alpha_s, 1e-4);
  EXPECT_EQ(back.expert_backward.beta_s, 6e-11);
  EXPECT_EQ(back.source, "profiled");
  try {
    MoeCosts::from_json({{"alltoall", {{"alpha_s", 1}}}}, "moe.cost_file");
    FAIL() << "a file without the expert's costs was read";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("moe.cost_file"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace rondo

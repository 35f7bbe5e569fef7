// FSMoE's cost model (parallelism/moe_cost.h): the alpha-beta fit, the pipeline's predicted time
// against its formula worked by hand, the degree choice, and moe_costs.json read back.
#include <gtest/gtest.h>

#include "common/errors.h"
#include "parallelism/moe_cost.h"

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
  EXPECT_NEAR(predict_expert_pipeline(c, kWork, 2, false),
              2 * exchange2 + 2 * std::max(compute2, exchange2), 1e-12);
  // Degree 4: the middle chunks carry a dispatch and a combine on the link.
  const double exchange4 = 1e-3 + 1e-6 * 4096, compute4 = compute1 / 4;
  EXPECT_NEAR(predict_expert_pipeline(c, kWork, 4, false),
              2 * exchange4 + 2 * std::max(compute4, exchange4) + 2 * std::max(compute4, 2 * exchange4), 1e-12);
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

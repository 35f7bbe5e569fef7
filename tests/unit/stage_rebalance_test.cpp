// faults.policy replan's lighter stages (orchestrator/stage_rebalance.h): a rank measured slower
// than its stage predicts gets fewer layers, the cut the best of every contiguous one; healthy
// ranks keep their partition; what cannot be re-partitioned says why.
#include <gtest/gtest.h>

#include "orchestrator/config.h"
#include "orchestrator/plan_builder.h"
#include "orchestrator/stage_rebalance.h"
#include "orchestrator/step_prediction.h"

namespace rondo {
namespace {

Config pipeline_config(std::vector<std::string> extra = {}) {
  std::vector<std::string> sets = {"model.num_layers=8", "parallel.world_size=2",
                                   "parallel.pipeline_model_parallel_size=2", "training.global_batch_size=8"};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return parse_config("", "t", sets);
}

// Each rank's predicted forward + backward seconds for its stage, times `slower` per rank.
std::vector<double> measured(const Config& c, const plan::Plan& plan, std::vector<double> slower) {
  std::vector<double> out;
  for (int r = 0; r < 2; ++r) {
    const auto& st = plan.stages(static_cast<int>(plan.ranks(r).stages(0)));
    const auto costs =
        predicted_stage_costs(c, {{static_cast<int>(st.index()), static_cast<int>(st.first_layer()),
                                   static_cast<int>(st.num_layers()), st.has_embedding(), st.has_lm_head()}});
    out.push_back((costs.f[0] + costs.b[0]) * slower[static_cast<size_t>(r)]);
  }
  return out;
}

TEST(StageRebalance, PredictsEachRanksStagesForTheDetector) {
  const Config c = pipeline_config();
  const auto plan = build_plan(c);
  const auto predicted = predicted_rank_compute(c, plan);
  EXPECT_EQ(predicted, measured(c, plan, {1.0, 1.0}));  // each rank's stage, as the replan measures it
  // Ranks whose work changes step to step, or one stage: no predictions.
  EXPECT_TRUE(predicted_rank_compute(pipeline_config({"parallel.pipeline_model_parallel_size=1"}),
                                     build_plan(pipeline_config({"parallel.pipeline_model_parallel_size=1"})))
                  .empty());
  const Config rp = pipeline_config({"pipeline.schedule=roundpipe"});
  EXPECT_TRUE(predicted_rank_compute(rp, build_plan(rp)).empty());
}

double slowest_stage(const Config& c, const std::vector<int>& layers, const std::vector<double>& factor) {
  double worst = 0;
  int first = 0;
  for (size_t s = 0; s < layers.size(); ++s) {
    const auto costs =
        predicted_stage_costs(c, {{static_cast<int>(s), first, layers[s], s == 0, s + 1 == layers.size()}});
    worst = std::max(worst, factor[s] * (costs.f[0] + costs.b[0]));
    first += layers[s];
  }
  return worst;
}

TEST(StageRebalance, ASlowRankGetsFewerLayersTheBestCut) {
  const auto c = pipeline_config();
  const auto plan = build_plan(c);
  const auto r = rebalance_stages(c, plan, measured(c, plan, {1.0, 3.0}), {1});
  ASSERT_FALSE(r.partition.empty()) << r.why_not;
  EXPECT_NEAR(r.factors.at(1), 3.0, 1e-9);
  EXPECT_EQ(r.factors.at(0), 1.0);
  const int second = std::stoi(r.partition.substr(r.partition.find(',') + 1));
  EXPECT_LT(second, 4);
  // No other cut of the 8 layers makes the slowest stage faster.
  const double chosen = slowest_stage(c, {8 - second, second}, {1.0, 3.0});
  for (int n = 0; n <= 8; ++n) EXPECT_LE(chosen, slowest_stage(c, {8 - n, n}, {1.0, 3.0}) * (1 + 1e-12)) << n;
}

TEST(StageRebalance, RanksAsFastAsPredictedKeepTheirPartition) {
  const auto c = pipeline_config();
  const auto plan = build_plan(c);
  const auto r = rebalance_stages(c, plan, measured(c, plan, {1.0, 1.0}), {1});
  EXPECT_TRUE(r.partition.empty());
  EXPECT_NE(r.why_not.find("already"), std::string::npos) << r.why_not;
}

TEST(StageRebalance, WhatCannotBeRePartitionedSaysWhy) {
  const auto one = pipeline_config({"parallel.pipeline_model_parallel_size=1"});
  EXPECT_NE(rebalance_stages(one, build_plan(one), {1, 1}, {1}).why_not.find("pipeline_model_parallel_size"),
            std::string::npos);
  const auto muon = pipeline_config({"training.optimizer=muon"});
  const auto plan = build_plan(muon);
  EXPECT_NE(
      rebalance_stages(muon, plan, measured(muon, plan, {1, 3}), {1}).why_not.find("training.optimizer"),
      std::string::npos);
}

}  // namespace
}  // namespace rondo

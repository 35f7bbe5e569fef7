// HDP with pipeline parallelism (parallelism/hdp_pipelines.h): a batch planned over pipelines runs
// in waves -- a group's sub-batch the same wave on every member, each pipeline's waves in the
// order of its timeline -- and its simulated step: one stage is the HDP plan itself, no schedule
// waits forever, and no step beats the lower bound.
#include <gtest/gtest.h>

#include <algorithm>

#include "common/errors.h"
#include "parallelism/hdp_pipelines.h"
#include "tests/unit/hdp_test_batches.h"

namespace rondo {
namespace {

using testing::mixed_batch;
using testing::seven_b;

void expect_valid_waves(const HdpPipelinePlan& plan) {
  const auto& subs = plan.hdp.sub_batches;
  ASSERT_EQ(plan.wave.size(), subs.size());
  for (size_t p = 0; p < subs.size(); ++p) {
    ASSERT_EQ(plan.wave[p].size(), subs[p].size());
    for (size_t i = 0; i < subs[p].size(); ++i) {
      EXPECT_LT(plan.wave[p][i], plan.waves);
      if (i > 0) {
        EXPECT_GT(plan.wave[p][i], plan.wave[p][i - 1]) << "pipeline " << p;
      }
      for (int64_t q : subs[p][i].group) {  // the same wave on every member
        const int64_t j = plan.sub_batch_in(q, plan.wave[p][i]);
        ASSERT_GE(j, 0) << "pipeline " << q << " has nothing in wave " << plan.wave[p][i];
        EXPECT_EQ(subs[static_cast<size_t>(q)][static_cast<size_t>(j)].sequences, subs[p][i].sequences);
      }
    }
  }
}

TEST(HdpPipelines, OneStageIsTheHdpPlanItself) {
  const auto cost = seven_b();
  for (uint64_t seed : {1, 2, 3}) {
    const auto lengths = mixed_batch(16 * 32768 / 2, 262144, seed);
    for (HdpPolicy policy : kHdpPolicies) {
      const auto plan = plan_hdp_pipelines(lengths, policy, {16, 32768}, 1, "1f1b", cost);
      expect_valid_waves(plan);
      EXPECT_NEAR(plan.step_s, plan.hdp.step_s, 1e-9 * plan.hdp.step_s) << hdp_policy_name(policy);
      EXPECT_NEAR(plan.busy_max_over_mean(), plan.hdp.busy_max_over_mean(), 1e-9);
    }
  }
}

TEST(HdpPipelines, EveryPolicyRunsOnEveryScheduleWithoutWaitingForeverAndNoStepBeatsTheBound) {
  const auto cost = seven_b();
  for (uint64_t seed : {4, 5, 6, 7}) {
    const auto lengths = mixed_batch(8 * 4 * 32768 / 2, 262144, seed);
    for (int64_t stages : {2, 4}) {
      const HdpOptions o{8, 32768};
      const double bound = hdp_lower_bound(lengths, o, cost, stages);
      for (const char* schedule : {"1f1b", "gpipe"}) {
        for (HdpPolicy policy : kHdpPolicies) {
          const auto plan = plan_hdp_pipelines(lengths, policy, o, stages, schedule, cost);
          expect_valid_waves(plan);
          EXPECT_GE(plan.step_s, bound * (1 - 1e-9)) << schedule << " " << hdp_policy_name(policy);
          // Every rank computes its pipeline's sub-batches, a stage's share each.
          for (size_t p = 0; p < plan.busy_s.size(); ++p)
            for (double b : plan.busy_s[p])
              EXPECT_NEAR(b * stages, plan.hdp.busy_s[p], 1e-9 * plan.hdp.busy_s[p] + 1e-12);
        }
      }
    }
  }
}

TEST(HdpPipelines, RondoCutsMicrobatchesForThePipelineAndBeatsTheBaselines) {
  const auto cost = seven_b();
  const auto lengths = mixed_batch(8 * 4 * 32768 / 2, 262144, 11);
  const HdpOptions o{8, 32768};
  const auto one = plan_hdp_pipelines(lengths, HdpPolicy::kRondo, o, 1, "1f1b", cost);
  const auto four = plan_hdp_pipelines(lengths, HdpPolicy::kRondo, o, 4, "1f1b", cost);
  // The HDP plan's own microbatches (packed up to the cap) leave 4 stages mostly waiting to fill
  // and drain; rondo's shorter ones run 4 stages in well under half the time of one.
  const auto packed = plan_hdp_waves(plan_hdp(lengths, HdpPolicy::kRondo, o, cost), 4, "1f1b", cost);
  EXPECT_LT(four.step_s, 0.6 * packed.step_s);
  EXPECT_LT(four.step_s, 0.5 * one.step_s);
  EXPECT_GT(four.waves, packed.waves);
  for (HdpPolicy baseline : {HdpPolicy::kStatic, HdpPolicy::kMegatron})
    EXPECT_LT(four.step_s, plan_hdp_pipelines(lengths, baseline, o, 4, "1f1b", cost).step_s);
}

TEST(HdpPipelines, RefusesOtherSchedulesNamingTheKey) {
  try {
    plan_hdp_pipelines({100, 200}, HdpPolicy::kRondo, {2, 1024}, 2, "interleaved_1f1b", seven_b());
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "pipeline.schedule");
  }
}

}  // namespace
}  // namespace rondo

#include <gtest/gtest.h>

#include "common/errors.h"
#include "pipeline/pipeline_schedule.h"

namespace rondo {
namespace {

int count(const std::vector<ComputeAction>& actions, ComputeKind kind) {
  int n = 0;
  for (const auto& a : actions) n += a.kind == kind;
  return n;
}

TEST(PipelineSchedule, SingleStageIsGradientAccumulation) {
  const auto a = generate_schedule("zbv", 0, 1, 3);
  ASSERT_EQ(a.size(), 6u);
  EXPECT_EQ(a[0], (ComputeAction{ComputeKind::kF, 0, 0}));
  EXPECT_EQ(a[1], (ComputeAction{ComputeKind::kB, 0, 0}));
  EXPECT_EQ(a[5], (ComputeAction{ComputeKind::kB, 0, 2}));
}

TEST(PipelineSchedule, OneFOneBWarmsUpByDistanceToTheLastStage) {
  const int p = 4, m = 8;
  for (int r = 0; r < p; ++r) {
    const auto a = generate_schedule("1f1b", r, p, m);
    EXPECT_EQ(count(a, ComputeKind::kF), m);
    EXPECT_EQ(count(a, ComputeKind::kB), m);
    int leading_forwards = 0;
    while (a[static_cast<size_t>(leading_forwards)].kind == ComputeKind::kF) ++leading_forwards;
    EXPECT_EQ(leading_forwards, p - r);  // warm-up p-r-1, then the first steady forward
  }
}

TEST(PipelineSchedule, GpipeRunsAllForwardsFirst) {
  const auto a = generate_schedule("gpipe", 1, 2, 4);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(a[static_cast<size_t>(i)].kind, ComputeKind::kF);
  for (int i = 4; i < 8; ++i) EXPECT_EQ(a[static_cast<size_t>(i)].kind, ComputeKind::kB);
}

TEST(PipelineSchedule, ScheduleWithoutGeneratorIsAConfigError) {
  try {
    generate_schedule("zb_h1", 0, 4, 8);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "pipeline.schedule");
  }
}

TEST(PipelineSchedule, EvenPartitionPlacesEmbeddingAndHead) {
  const auto st = partition_layers_evenly(8, 2, 2);
  ASSERT_EQ(st.size(), 4u);
  EXPECT_TRUE(st[0].has_embedding);
  EXPECT_TRUE(st[3].has_lm_head);
  EXPECT_EQ(st[2].first_layer, 4);
  EXPECT_EQ(stages_of_pipeline_rank(1, 2, 2), (std::vector<int>{1, 3}));
}

}  // namespace
}  // namespace rondo

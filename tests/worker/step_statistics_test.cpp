// The step's statistics travel as one vector of doubles: every field comes back where it went.
#include <gtest/gtest.h>

#include <stdexcept>

#include "worker/step_statistics.h"

namespace rondo {
namespace {

TEST(StepStatistics, SumsComeBackFieldByField) {
  StepSums sums{.grad_norm_squared = 4,
                .loss = 2.5,
                .compute_s = 0.75,
                .targets = 512,
                .chunks = 6,
                .chunks_recomputed = 2,
                .stage_f = {1, 2},
                .stage_b = {3, 4, 5},
                .stage_w = {6, 7, 8},
                .stage_b_lead = {9}};
  auto values = sums.to_values();
  ASSERT_EQ(values.size(), 6u + 2 + 3 + 3 + 1);
  for (auto& v : values) v *= 2;  // as a sum over two equal ranks would
  StepSums back;
  back.stage_f.resize(2);
  back.stage_b.resize(3);
  back.stage_w.resize(3);
  back.stage_b_lead.resize(1);
  back.from_values(values);
  EXPECT_EQ(back.grad_norm_squared, 8);
  EXPECT_EQ(back.loss, 5);
  EXPECT_EQ(back.compute_s, 1.5);
  EXPECT_EQ(back.targets, 1024);
  EXPECT_EQ(back.chunks, 12);
  EXPECT_EQ(back.chunks_recomputed, 4);
  EXPECT_EQ(back.stage_f, (std::vector<double>{2, 4}));
  EXPECT_EQ(back.stage_b, (std::vector<double>{6, 8, 10}));
  EXPECT_EQ(back.stage_w, (std::vector<double>{12, 14, 16}));
  EXPECT_EQ(back.stage_b_lead, (std::vector<double>{18}));
  StepSums other_shape;
  EXPECT_THROW(other_shape.from_values(values), std::invalid_argument);
}

TEST(StepStatistics, MaximaComeBackFieldByFieldAndGiveTheComputeSpan) {
  const StepMaxima m{.max_rss_mb = 100,
                     .page_faults = 3,
                     .first_compute_ns_negated = -1e9,
                     .last_compute_ns = 1.25e9,
                     .longest_sequence = 4096,
                     .busiest_compute_s = 2.5,
                     .checkpoint_requested = 1,
                     .stop_requested = 0,
                     .rings_received_negated = -3};
  const auto back = StepMaxima::from_values(m.to_values());
  EXPECT_EQ(back.max_rss_mb, 100);
  EXPECT_EQ(back.page_faults, 3);
  EXPECT_EQ(back.longest_sequence, 4096);
  EXPECT_EQ(back.busiest_compute_s, 2.5);
  EXPECT_EQ(back.checkpoint_requested, 1);
  EXPECT_EQ(back.stop_requested, 0);
  EXPECT_EQ(back.rings_received_negated, -3);
  EXPECT_DOUBLE_EQ(back.compute_span_s(), 0.25);
}

}  // namespace
}  // namespace rondo

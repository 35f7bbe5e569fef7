// HDP on hosts (parallelism/hdp_planner.h, rank_timelines.h): a group on one host passes its ring
// faster than one spanning hosts. The timelines find groups on one host first; every policy times
// each group where it lands; rondo's plans on a fabric beat the same planner placing groups as if
// on one host; `rondo plan` reports the groups across hosts and what ignoring them would cost.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "orchestrator/config.h"
#include "orchestrator/plan_builder.h"
#include "parallelism/hdp_pipelines.h"
#include "parallelism/hdp_planner.h"
#include "parallelism/rank_timelines.h"
#include "tests/unit/hdp_test_batches.h"
#include "tests/unit/rondo_cli.h"

namespace rondo {
namespace {

using testing::mixed_batch;

// The 7B-class model on hosts of 8 devices: 900 GB/s within a host, 50 GB/s between hosts.
ContextParallelCost seven_b_on_hosts() {
  auto spec = testing::seven_b().spec();
  spec.link_bytes_per_s = 900e9;
  spec.cross_host_bytes_per_s = 50e9;
  return ContextParallelCost(spec);
}

HdpOptions on_hosts(int64_t ranks, int64_t per_host, bool interleaved = false) {
  HdpOptions o(ranks, 32768);
  std::vector<int64_t> hosts;
  const int64_t count = ranks / per_host;
  for (int64_t r = 0; r < ranks; ++r) hosts.push_back(interleaved ? r % count : r / per_host);
  hdp_set_hosts(o, hosts);
  return o;
}

int64_t groups_across(const HdpPlan& plan, const HdpOptions& o) {
  int64_t n = 0;
  for (const auto& p : plan.placements) n += hdp_spans_hosts(p.ranks, o);
  return n;
}

TEST(HdpFabric, TheCostPassesTheRingBetweenHostsAtTheirRate) {
  const auto cost = seven_b_on_hosts();
  // 8K tokens a rank: the ring's transfers outlast its blocks' attention between hosts.
  EXPECT_GT(cost.seconds(65536, 8, true), 1.5 * cost.seconds(65536, 8, false));
  // 32K a rank: attention hides even the slower transfers.
  EXPECT_DOUBLE_EQ(cost.seconds(262144, 8, true), cost.seconds(262144, 8, false));
  EXPECT_EQ(cost.seconds(8192, 1, true), cost.seconds(8192, 1, false));  // no ring
  const auto o = on_hosts(16, 8);
  EXPECT_EQ(o.largest_host, 8);
  EXPECT_FALSE(hdp_spans_hosts({0, 7}, o));
  EXPECT_TRUE(hdp_spans_hosts({7, 8}, o));
  // A degree a host holds is timed within it; larger ones across.
  EXPECT_EQ(hdp_best_seconds(262144, 8, o, cost), cost.seconds(262144, 8, false));
  EXPECT_EQ(hdp_best_seconds(262144, 9, o, cost), cost.seconds(262144, 9, true));
  try {
    HdpOptions wrong(16, 32768);
    hdp_set_hosts(wrong, {0, 0, 1});
    FAIL() << "accepted 3 hosts for 16 ranks";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "topology.rank_hosts");
  }
}

TEST(HdpFabric, OneHostPlansAsNoHosts) {
  const auto cost = seven_b_on_hosts();
  const auto lengths = mixed_batch(32 * 8192 / 2, 65536, 5);
  HdpOptions none(32, 8192), one(32, 8192);
  hdp_set_hosts(one, std::vector<int64_t>(32, 3));
  for (HdpPolicy policy : kHdpPolicies) {
    const auto a = plan_hdp(lengths, policy, none, cost), b = plan_hdp(lengths, policy, one, cost);
    EXPECT_EQ(a.step_s, b.step_s) << hdp_policy_name(policy);
    for (size_t i = 0; i < lengths.size(); ++i) EXPECT_EQ(a.placements[i].ranks, b.placements[i].ranks);
  }
}

TEST(HdpFabric, PipelinesShareAHostWhenEveryStageDoes) {
  // Pipeline 0 and 1: stages on hosts (0, 1); pipeline 2: (0, 2); pipeline 3: (0, 1).
  EXPECT_EQ(hdp_pipeline_hosts({{0, 1}, {0, 1}, {0, 2}, {0, 1}}), (std::vector<int64_t>{0, 0, 1, 0}));
}

TEST(HdpFabric, TimelinesFindGroupsOnOneHostFirst) {
  RankTimelines t(4, {5, 5, 9, 9});  // hosts by any numbers
  t.place({0, 1}, 1.0);
  t.place({3}, 5.0);
  // Free earliest overall: ranks 2 (at 0) and 0 (at 1), across hosts; ranks 0 and 1 end sooner on one host.
  EXPECT_EQ(t.earliest_group(2, 1.0, 2.0), (std::vector<int64_t>{0, 1}));
  // Equal ends: one host; a ring between hosts faster than within (contrived): the ranks free earliest.
  EXPECT_EQ(t.earliest_group(2, 1.0, 1.0), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(t.earliest_group(2, 1.0, 0.5), (std::vector<int64_t>{0, 2}));
  // By 4: host 5 has ranks 0 and 1 (no idle); host 9's rank 3 is busy until 5.
  EXPECT_EQ(t.latest_group_by(2, 4.0, 1.0, 2.0), (std::vector<int64_t>{0, 1}));
  EXPECT_TRUE(t.spans_hosts({1, 2}));
  RankTimelines u(4, {0, 0, 1, 1});
  u.place({1}, 9.0);
  u.place({3}, 9.0);
  // No host has two ranks free by 4 - 1: across hosts, if the slower ring still ends by 4.
  EXPECT_EQ(u.latest_group_by(2, 4.0, 1.0, 2.0), (std::vector<int64_t>{0, 2}));
  EXPECT_TRUE(u.latest_group_by(2, 4.0, 1.0, 5.0).empty());
}

// Every sequence on enough distinct ranks; each timed where it landed; the step no shorter than
// the bound; the plan replayed on its own fabric takes the same step.
void expect_timed_on_its_hosts(const HdpPlan& plan, const std::vector<int64_t>& lengths, const HdpOptions& o,
                               const ContextParallelCost& cost) {
  for (size_t i = 0; i < lengths.size(); ++i) {
    const auto& p = plan.placements[i];
    EXPECT_GE(static_cast<int64_t>(p.ranks.size()), hdp_min_degree(lengths[i], o));
    EXPECT_DOUBLE_EQ(p.seconds, hdp_group_seconds(lengths[i], p.ranks, o, cost)) << "sequence " << i;
  }
  EXPECT_GE(plan.step_s, hdp_lower_bound(lengths, o, cost) * (1 - 1e-9));
  EXPECT_NEAR(hdp_retimed(plan, o, cost).step_s, plan.step_s, 1e-9 * plan.step_s);
}

TEST(HdpFabric, RondoKeepsGroupsOnHostsAndBeatsPlacingThemBlind) {
  const auto cost = seven_b_on_hosts();
  const auto o = on_hosts(64, 8);
  HdpOptions blind = o;
  hdp_set_hosts(blind, {});
  double rondo = 0, fabric_blind = 0, bound = 0;
  int64_t across = 0, across_blind = 0;
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    // Smaller shares per rank than the benchmarks': more groups of 2-8 ranks.
    HdpOptions small = o, small_blind = blind;
    small.max_tokens_per_rank = small_blind.max_tokens_per_rank = 8192;
    const auto lengths = mixed_batch(64 * 8192 / 2, 262144, seed);
    for (HdpPolicy policy : kHdpPolicies) {
      SCOPED_TRACE(hdp_policy_name(policy));
      expect_timed_on_its_hosts(plan_hdp(lengths, policy, small, cost), lengths, small, cost);
    }
    const auto plan = plan_hdp(lengths, HdpPolicy::kRondo, small, cost);
    const auto blind_plan = hdp_retimed(plan_hdp(lengths, HdpPolicy::kRondo, small_blind, cost), small, cost);
    rondo += plan.step_s;
    fabric_blind += blind_plan.step_s;
    bound += hdp_lower_bound(lengths, small, cost);
    across += groups_across(plan, small);
    across_blind += groups_across(blind_plan, small);
  }
  EXPECT_LT(rondo, fabric_blind);
  EXPECT_LT(across, across_blind);
  EXPECT_LE(rondo, 1.10 * bound);
}

TEST(HdpFabric, AStaticMeshOnInterleavedHostsPassesEveryRingBetweenHosts) {
  const auto cost = seven_b_on_hosts();
  // 8K tokens a rank, sequences up to 64K: the static mesh is 8 ranks deep, its rings bound by
  // their transfers between hosts.
  const auto lengths = mixed_batch(64 * 8192 / 2, 65536, 4);
  auto contiguous = on_hosts(64, 8), interleaved = on_hosts(64, 8, true);
  contiguous.max_tokens_per_rank = interleaved.max_tokens_per_rank = 8192;
  const auto a = plan_hdp(lengths, HdpPolicy::kStatic, contiguous, cost);
  const auto b = plan_hdp(lengths, HdpPolicy::kStatic, interleaved, cost);
  EXPECT_EQ(groups_across(a, contiguous), 0);
  EXPECT_EQ(groups_across(b, interleaved), static_cast<int64_t>(lengths.size()));
  EXPECT_GT(b.step_s, a.step_s);
  // rondo finds hosts wherever they are.
  const auto r = plan_hdp(lengths, HdpPolicy::kRondo, interleaved, cost);
  EXPECT_LT(r.step_s, b.step_s);
  expect_timed_on_its_hosts(r, lengths, interleaved, cost);
}

TEST(HdpFabric, PipelinesOnHostsPlanAndSimulate) {
  const auto cost = seven_b_on_hosts();
  const auto o = on_hosts(16, 4);  // 16 pipelines, 4 a host
  const auto lengths = mixed_batch(16 * 2 * 32768 / 2, 262144, 2);
  for (HdpPolicy policy : kHdpPolicies) {
    const auto plan = plan_hdp_pipelines(lengths, policy, o, 2, "1f1b", cost);
    for (size_t i = 0; i < lengths.size(); ++i)
      EXPECT_DOUBLE_EQ(plan.hdp.placements[i].seconds,
                       hdp_group_seconds(lengths[i], plan.hdp.placements[i].ranks, o, cost));
    EXPECT_GE(plan.step_s, hdp_lower_bound(lengths, o, cost, 2) * (1 - 1e-9)) << hdp_policy_name(policy);
  }
}

TEST(HdpFabric, RondoPlanReportsGroupsAcrossHostsAndTheBlindPlacement) {
  const std::string cfg = std::string(RONDO_SOURCE_DIR) + "/bench/hdp_64.yaml";
  const std::string fabric =
      " --set topology.leaves=1 --set topology.hosts_per_leaf=8 --set topology.ranks_per_host=8"
      " --set topology.host_gbps=3200 --set pipeline.p2p_bandwidth_gbps=900 --set "
      "parallel.max_tokens_per_rank=8192"
      " --set data.tokens_per_step=262144";
  const auto plan = testing::run_rondo("plan " + cfg + " --json --steps 2" + fabric);
  ASSERT_EQ(plan.status, 0) << plan.output;
  const auto j = nlohmann::json::parse(plan.output);
  EXPECT_EQ(j.at("hdp_batches").at("hosts"), 8);
  // Contiguous blocks of 2-8 ranks stay on a host of 8, those of 9-32 do not.
  const double megatron = j.at("hdp").at("megatron").at("groups_across_hosts").get<double>();
  EXPECT_GT(megatron, 0.0);
  EXPECT_LT(megatron, 0.5);
  // Rank r on host r mod 8: every contiguous group spans hosts.
  std::string interleaved = " --set topology.rank_hosts=0";
  for (int r = 1; r < 64; ++r) interleaved.append(",").append(std::to_string(r % 8));
  const auto scattered = testing::run_rondo("plan " + cfg + " --json --steps 1" + fabric + interleaved);
  ASSERT_EQ(scattered.status, 0) << scattered.output;
  const auto k = nlohmann::json::parse(scattered.output);
  EXPECT_EQ(k.at("hdp").at("static").at("groups_across_hosts").get<double>(), 1.0);
  EXPECT_LT(k.at("hdp").at("rondo").at("groups_across_hosts").get<double>(), 1.0);
  const auto& rondo = j.at("hdp").at("rondo");
  EXPECT_GE(rondo.at("fabric_blind_step_time").get<double>(), rondo.at("step_time").get<double>());
  // The workers plan with the same hosts and rates.
  const auto built = build_plan(
      parse_config("", "t",
                   {"parallel.world_size=16", "parallel.hdp=true", "parallel.pipeline_model_parallel_size=2",
                    "topology.leaves=1", "topology.hosts_per_leaf=4", "topology.ranks_per_host=4",
                    "topology.host_gbps=800", "pipeline.p2p_bandwidth_gbps=900"}));
  // 8 pipelines, stage 0 on ranks 0-7 (hosts 0, 1), stage 1 on ranks 8-15 (hosts 2, 3).
  EXPECT_EQ(std::vector<int64_t>(built.hdp().rank_hosts().begin(), built.hdp().rank_hosts().end()),
            (std::vector<int64_t>{0, 0, 0, 0, 1, 1, 1, 1}));
  EXPECT_DOUBLE_EQ(built.hdp().cross_host_bytes_per_s(), 800e9 / 8 / 4);
  EXPECT_DOUBLE_EQ(built.hdp().link_bytes_per_s(), 900e9);
  const auto text = testing::run_rondo("plan " + cfg + " --steps 1" + fabric);
  EXPECT_EQ(text.status, 0);
  EXPECT_NE(text.output.find("on 8 hosts"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("as if on one host"), std::string::npos) << text.output;
}

}  // namespace
}  // namespace rondo

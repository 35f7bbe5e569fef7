// The fabric from topology.* (orchestrator/fabric.h), the rings the plan orders on it, and `rondo
// plan --traffic`'s report (orchestrator/traffic_report.h).
#include <gtest/gtest.h>

#include "common/errors.h"
#include "orchestrator/config.h"
#include "orchestrator/fabric.h"
#include "orchestrator/plan_builder.h"
#include "orchestrator/plan_views.h"
#include "orchestrator/traffic_report.h"
#include "proto/plan_names.h"

namespace rondo {
namespace {

// Four ranks on two leaves of four hosts, placed in turn on either leaf: the rank-order ring
// crosses between the leaves on every edge.
const std::vector<std::string> kFragmented = {"parallel.world_size=4",        "training.micro_batch_size=1",
                                              "training.global_batch_size=4", "topology.leaves=2",
                                              "topology.hosts_per_leaf=4",    "topology.spines=2",
                                              "topology.rank_hosts=0,4,1,5"};

// The key a config with `sets` is refused for ("" when accepted); batches that any world here divides.
std::string error_key(std::vector<std::string> sets) {
  sets.insert(sets.begin(), {"training.micro_batch_size=1", "training.global_batch_size=4"});
  try {
    parse_config("", "t", sets);
  } catch (const ConfigError& e) {
    return e.key();
  }
  return "";
}

TEST(Fabric, TheConfigDescribesItAndBadValuesNameTheirKey) {
  const auto f = fabric_of(parse_config("", "t", kFragmented));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->network.hosts(), 8);
  EXPECT_EQ(f->host_of_rank, (std::vector<int>{0, 4, 1, 5}));
  EXPECT_FALSE(fabric_of(parse_config("", "t", {})));  // topology.leaves 0: no fabric
  auto sets = kFragmented;
  sets.back() = "topology.rank_hosts=";
  sets.push_back("topology.ranks_per_host=2");
  sets.push_back("topology.degraded_links=leaf0>spine1, spine1>leaf1,host3>leaf,leaf>host7");
  const auto g = fabric_of(parse_config("", "t", sets));
  EXPECT_EQ(g->host_of_rank, (std::vector<int>{0, 0, 1, 1}));
  const auto& n = g->network;
  EXPECT_EQ(g->degraded, (std::set<int>{n.leaf_up(0, 1), n.spine_down(1, 1), n.host_up(3), n.host_down(7)}));

  EXPECT_EQ(error_key({"parallel.world_size=4", "topology.leaves=2", "topology.rank_hosts=0,1,2"}),
            "topology.rank_hosts");  // three hosts for four ranks
  EXPECT_EQ(error_key({"parallel.world_size=2", "topology.leaves=1", "topology.hosts_per_leaf=2",
                       "topology.rank_hosts=0,2"}),
            "topology.rank_hosts");  // host 2 of 0..1
  EXPECT_EQ(error_key({"parallel.world_size=4", "topology.leaves=1", "topology.hosts_per_leaf=3"}),
            "topology.ranks_per_host");  // four hosts needed
  for (const char* bad : {"leaf2>spine0", "leaf0>spine", "host1>spine0", "leaf0-spine0", "spine0>host1"}) {
    EXPECT_EQ(error_key({"topology.leaves=2", "topology.hosts_per_leaf=2",
                         std::string("topology.degraded_links=") + bad}),
              "topology.degraded_links")
        << bad;
  }
  EXPECT_EQ(error_key({"topology.leaves=2", "topology.spines=0"}), "topology.spines");
  EXPECT_EQ(error_key({"topology.leaves=2", "topology.host_gbps=0"}), "topology.host_gbps");
}

TEST(Fabric, ThePlansRingsLeaveEachLeafOnce) {
  const auto plan = build_plan(parse_config("", "t", kFragmented));
  const plan::Group* dp = nullptr;
  for (const auto& g : plan.mesh().groups()) {
    if (g.kind() == plan::GROUP_DP) dp = &g;
  }
  ASSERT_NE(dp, nullptr);
  EXPECT_EQ(std::vector<int>(dp->ring().begin(), dp->ring().end()), (std::vector<int>{0, 2, 1, 3}));
  EXPECT_NE(plan_summary(plan).find("data-parallel group 0: 0 -> 2 -> 1 -> 3 -> 0"), std::string::npos)
      << plan_summary(plan);
  // A link to avoid as well: the fabric's ring, then around the link.
  auto sets = kFragmented;
  sets.push_back("comms.avoid_links=2>1");
  const auto around = build_plan(parse_config("", "t", sets));
  for (const auto& g : around.mesh().groups()) {
    if (g.kind() != plan::GROUP_DP) continue;
    const std::vector<int> ring(g.ring().begin(), g.ring().end());
    EXPECT_EQ(avoided_links_used(ring, {{2, 1}}), 0);
    EXPECT_EQ(ring, (std::vector<int>{0, 3, 1, 2}));  // the same ring the other way round
  }
}

TEST(Fabric, WithContextParallelismTheGradientGroupsRingIsOrdered) {
  // cp=2 on the same four ranks: the gradients are summed over the data- and context-parallel
  // ranks together, so that group gets the fabric's ring, and the data-parallel groups none.
  auto sets = kFragmented;
  sets.push_back("parallel.context_parallel_size=2");
  const auto plan = build_plan(parse_config("", "t", sets));
  EXPECT_EQ(gradient_group_kind(plan.mesh()), plan::GROUP_DP_CP);
  int ordered = 0;
  for (const auto& g : plan.mesh().groups()) {
    if (g.kind() == plan::GROUP_DP) {
      EXPECT_EQ(g.ring_size(), 0);
    }
    if (g.kind() != plan::GROUP_DP_CP) continue;
    EXPECT_EQ(std::vector<int>(g.ring().begin(), g.ring().end()), (std::vector<int>{0, 2, 1, 3}));
    ++ordered;
  }
  EXPECT_EQ(ordered, 1);
  EXPECT_EQ(traffic_report(parse_config("", "t", sets), plan)["rings"].size(), 1u);
}

TEST(TrafficReport, RondosRingsAndPathsAgainstEcmpInRankOrder) {
  auto sets = kFragmented;
  sets.push_back("topology.degraded_links=leaf0>spine1");
  const auto config = parse_config("", "t", sets);
  const auto r = traffic_report(config, build_plan(config));
  ASSERT_EQ(r["rings"].size(), 1u);
  EXPECT_EQ(r["rings"][0]["flows_between_leaves_rank_order"], 4);
  EXPECT_EQ(r["rings"][0]["flows_between_leaves"], 2);
  EXPECT_GT(r["rings"][0]["bytes"].get<double>(), 0);
  EXPECT_EQ(r["rondo"]["degraded_bytes"], 0.0);  // spine 0 takes leaf 0's flow
  EXPECT_LE(r["rondo"]["completion_s"].get<double>(), r["ecmp"]["completion_s"].get<double>());
  EXPECT_NEAR(r["rondo"]["completion_s"].get<double>(), r["lower_bound_s"].get<double>(), 1e-12);
  const auto text = traffic_report_text(r);
  EXPECT_NE(text.find("2 flows between leaves (rank order: 4)"), std::string::npos) << text;
  EXPECT_NE(text.find("degraded: leaf 0 -> spine 1"), std::string::npos) << text;
  try {
    const auto plain = parse_config("", "t", {});
    traffic_report(plain, build_plan(plain));
    ADD_FAILURE() << "a report without a fabric";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "topology.leaves");
  }
}

}  // namespace
}  // namespace rondo

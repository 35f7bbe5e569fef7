// The HDP planner (parallelism/hdp_planner.h): its cost of a sequence on a context-parallel group,
// the plans of every policy (each a valid layout: every sequence on a group large enough to hold
// it, no rank running two things at once, sub-batches within the cap), rondo's step against the
// lower bound, the batches it plans (data/hdp_batches.h) and `rondo plan`'s comparison.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "common/errors.h"
#include "data/hdp_batches.h"
#include "data/lognormal_mix.h"
#include "orchestrator/config.h"
#include "orchestrator/hdp_report.h"
#include "parallelism/hdp_planner.h"
#include "parallelism/model_flops.h"
#include "tests/unit/hdp_test_batches.h"
#include "tests/unit/rondo_cli.h"

namespace rondo {
namespace {

using testing::mixed_batch;
using testing::seven_b;

TEST(ContextParallelCost, OneRankIsTheWholeModelForwardAndBackward) {
  const auto cost = seven_b();
  const auto& d = cost.spec().dims;
  EXPECT_NEAR(cost.seconds(8192, 1), 3 * segment_forward_flops(d, 0, 8192) / 400e12, 1e-12);
  // Compute splits over the group: the rank-seconds of compute stay the same.
  EXPECT_NEAR(4 * cost.compute_seconds(65536, 4), cost.compute_seconds(65536, 1), 1e-9);
  // The ring adds time, so a group of d is never faster than 1/d of one rank...
  for (int64_t g : {2, 8, 64}) EXPECT_GE(cost.seconds(65536, g), cost.compute_seconds(65536, g));
  // ...and once its transfers dominate, more ranks stop helping.
  EXPECT_GT(cost.seconds(65536, 1024), 0.9 * cost.seconds(65536, 256));
}

TEST(HdpPlanner, NamesTheLengthTheCapAndTheKeyOfASequenceNoGroupHolds) {
  try {
    hdp_min_degree(100000, {4, 16384});
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "parallel.max_tokens_per_rank");
    EXPECT_NE(std::string(e.what()).find("100000 tokens"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("16384"), std::string::npos) << e.what();
  }
  EXPECT_EQ(hdp_min_degree(65536, {4, 16384}), 4);
  EXPECT_EQ(hdp_min_degree(1, {4, 16384}), 1);
}

// Every sequence placed once on enough distinct ranks, no rank running two things at once, each
// rank's busy time its runs' sum, sub-batches in time order within the cap, every sequence in them.
void expect_valid(const HdpPlan& plan, const std::vector<int64_t>& lengths, const HdpOptions& o) {
  ASSERT_EQ(plan.placements.size(), lengths.size());
  std::vector<std::vector<std::pair<double, double>>> runs(static_cast<size_t>(o.ranks));
  for (size_t i = 0; i < lengths.size(); ++i) {
    const auto& p = plan.placements[i];
    EXPECT_EQ(p.tokens, lengths[i]);
    EXPECT_GE(static_cast<int64_t>(p.ranks.size()), hdp_min_degree(lengths[i], o)) << "sequence " << i;
    EXPECT_TRUE(std::is_sorted(p.ranks.begin(), p.ranks.end()));
    EXPECT_EQ(std::adjacent_find(p.ranks.begin(), p.ranks.end()), p.ranks.end());
    for (int64_t r : p.ranks) runs[static_cast<size_t>(r)].emplace_back(p.start_s, p.start_s + p.seconds);
  }
  std::vector<int64_t> seen(lengths.size(), 0);
  for (size_t r = 0; r < runs.size(); ++r) {
    std::sort(runs[r].begin(), runs[r].end());
    double busy = 0;
    for (size_t k = 0; k < runs[r].size(); ++k) {
      busy += runs[r][k].second - runs[r][k].first;
      if (k > 0) {
        EXPECT_LE(runs[r][k - 1].second, runs[r][k].first + 1e-9) << "rank " << r << " overlaps";
      }
      EXPECT_LE(runs[r][k].second, plan.step_s + 1e-9);
    }
    EXPECT_NEAR(busy, plan.busy_s[r], 1e-6 * std::max(1.0, busy));
    double last = -1;
    for (const auto& sb : plan.sub_batches[r]) {
      EXPECT_LE(sb.tokens_per_rank, o.max_tokens_per_rank);
      EXPECT_GE(sb.start_s, last);
      last = sb.start_s;
      for (int64_t s : sb.sequences) seen[static_cast<size_t>(s)] += sb.group.size() == 1 ? 1 : 0;
      if (sb.group.size() > 1) {
        ASSERT_EQ(sb.sequences.size(), 1u);
        EXPECT_EQ(sb.group, plan.placements[static_cast<size_t>(sb.sequences[0])].ranks);
      }
    }
  }
  for (size_t i = 0; i < lengths.size(); ++i)
    if (plan.placements[i].ranks.size() == 1) {
      EXPECT_EQ(seen[i], 1) << "sequence " << i << " in no sub-batch";
    }
}

TEST(HdpPlanner, EveryPolicyLaysOutAValidPlan) {
  const auto cost = seven_b();
  const HdpOptions o{48, 32768};  // not a power of two: megatron's blocks and static's mesh must cope
  const auto lengths = mixed_batch(48 * 32768 / 2, 262144, 3);
  ASSERT_GT(lengths.size(), 20u);
  const double bound = hdp_lower_bound(lengths, o, cost);
  for (HdpPolicy policy : kHdpPolicies) {
    SCOPED_TRACE(hdp_policy_name(policy));
    const auto plan = plan_hdp(lengths, policy, o, cost);
    expect_valid(plan, lengths, o);
    EXPECT_GE(plan.step_s, bound * (1 - 1e-9));
  }
  // static: one degree, dividing the ranks; megatron: at least the smallest power of two that
  // holds the sequence (its fill step may double a group), on a contiguous block of ranks.
  const auto fixed = plan_hdp(lengths, HdpPolicy::kStatic, o, cost).degree_histogram();
  ASSERT_EQ(fixed.size(), 1u);
  EXPECT_EQ(o.ranks % fixed.begin()->first, 0);
  EXPECT_GE(fixed.begin()->first, hdp_min_degree(*std::max_element(lengths.begin(), lengths.end()), o));
  const auto megatron = plan_hdp(lengths, HdpPolicy::kMegatron, o, cost);
  for (size_t i = 0; i < lengths.size(); ++i) {
    const auto& r = megatron.placements[i].ranks;
    int64_t pow2 = 1;
    while (pow2 < hdp_min_degree(lengths[i], o)) pow2 *= 2;
    EXPECT_GE(static_cast<int64_t>(r.size()), std::min(pow2, o.ranks));
    EXPECT_EQ(r.back() - r.front() + 1, static_cast<int64_t>(r.size()));
  }
}

TEST(HdpPlanner, RondoFinishesNearTheLowerBoundAndBeatsTheBaselines) {
  const auto cost = seven_b();
  for (int64_t ranks : {64, 256}) {
    const HdpOptions o{ranks, 32768};
    double rondo = 0, stat = 0, megatron = 0, bound = 0, balance = 0;
    for (uint64_t seed = 1; seed <= 5; ++seed) {
      const auto lengths = mixed_batch(ranks * 32768 / 2, 262144, seed);
      bound += hdp_lower_bound(lengths, o, cost);
      const auto plan = plan_hdp(lengths, HdpPolicy::kRondo, o, cost);
      rondo += plan.step_s;
      balance += plan.busy_max_over_mean() / 5;
      stat += plan_hdp(lengths, HdpPolicy::kStatic, o, cost).step_s;
      megatron += plan_hdp(lengths, HdpPolicy::kMegatron, o, cost).step_s;
    }
    EXPECT_LE(rondo, 1.10 * bound) << ranks << " ranks";
    EXPECT_LE(balance, 1.10) << ranks << " ranks";
    EXPECT_LE(2 * rondo, stat) << ranks << " ranks";
    EXPECT_LT(rondo, megatron) << ranks << " ranks";
  }
}

TEST(HdpPlanner, SplitsALongSequenceForTimeNotOnlyForMemory) {
  // One long sequence among many short ones on 16 ranks: memory needs 2 ranks for it, time more
  // (its attention alone outweighs the rest of the batch's work on two).
  const auto cost = seven_b();
  const HdpOptions o{16, 65536};
  std::vector<int64_t> lengths{131072};
  for (int i = 0; i < 200; ++i) lengths.push_back(2048);
  const auto plan = plan_hdp(lengths, HdpPolicy::kRondo, o, cost);
  expect_valid(plan, lengths, o);
  EXPECT_GT(plan.placements[0].ranks.size(), 2u);
  EXPECT_EQ(plan_hdp(lengths, HdpPolicy::kMegatron, o, cost).placements[0].ranks.size(), 2u);
  EXPECT_LT(plan.step_s, plan_hdp(lengths, HdpPolicy::kMegatron, o, cost).step_s);
}

TEST(HdpBatches, WholeDocumentsCutAtTheLongestContextTheSameEveryTime) {
  const auto docs = lognormal_lengths({300, 7.0, 1.5, 100000, 4});
  HdpBatches a(docs, 40000, 16384, 9), b(docs, 40000, 16384, 9), c(docs, 40000, 16384, 10);
  int64_t drawn = 0;
  bool differs = false;
  for (int step = 0; step < 30; ++step) {
    const auto x = a.next();
    EXPECT_EQ(x, b.next());
    differs |= x != c.next();
    const int64_t tokens = std::accumulate(x.begin(), x.end(), int64_t{0});
    EXPECT_LE(tokens, 40000);
    EXPECT_GT(tokens, 40000 - 16384);  // the document that did not fit opens the next step
    for (int64_t l : x) EXPECT_TRUE(l >= 1 && l <= 16384);
    drawn += static_cast<int64_t>(x.size());
  }
  EXPECT_GT(drawn, 300);  // past one pass over the documents
  EXPECT_TRUE(differs);
  // The same draws with their documents: each sequence its document's length, cut.
  HdpBatches d(docs, 40000, 16384, 9), e(docs, 40000, 16384, 9);
  std::set<size_t> seen;
  for (int step = 0; step < 5; ++step) {  // within the first pass over the 300 documents
    const auto lengths = d.next();
    const auto sequences = e.next_sequences();
    ASSERT_EQ(sequences.size(), lengths.size());
    for (size_t i = 0; i < lengths.size(); ++i) {
      EXPECT_EQ(sequences[i].length, lengths[i]);
      EXPECT_EQ(sequences[i].length, std::min<int64_t>(docs.at(sequences[i].document), 16384));
      EXPECT_TRUE(seen.insert(sequences[i].document).second) << "a document twice in one pass";
    }
  }
  try {
    HdpBatches(docs, 1000, 16384, 1);
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "data.tokens_per_step");
  }
}

std::string hdp_error_key(std::vector<std::string> sets) {
  sets.insert(sets.begin(), {"parallel.world_size=4", "training.micro_batch_size=1",
                             "training.global_batch_size=4", "data.path=lognormal", "model.seq_length=4096"});
  try {
    parse_config("", "t", sets);
  } catch (const ConfigError& e) {
    return e.key();
  }
  return "";
}

TEST(HdpConfig, BadValuesNameTheirKey) {
  EXPECT_EQ(hdp_error_key({"parallel.hdp=true"}), "");
  EXPECT_EQ(hdp_error_key({"parallel.hdp=true", "parallel.hdp_policy=greedy"}), "parallel.hdp_policy");
  EXPECT_EQ(hdp_error_key({"parallel.hdp=true", "parallel.max_tokens_per_rank=512"}),
            "parallel.max_tokens_per_rank");
  EXPECT_EQ(hdp_error_key({"parallel.hdp=true", "data.tokens_per_step=1000"}), "data.tokens_per_step");
  EXPECT_EQ(hdp_error_key({"parallel.hdp=true", "parallel.context_parallel_size=2"}),
            "parallel.context_parallel_size");
  EXPECT_EQ(hdp_error_key({"parallel.hdp=true", "parallel.tensor_model_parallel_size=2"}), "parallel.hdp");
  // With pipelines: groups of pipelines in waves of gpipe or 1f1b (hdp_pipelines.h).
  EXPECT_EQ(hdp_error_key({"parallel.hdp=true", "parallel.pipeline_model_parallel_size=2"}), "");
  EXPECT_EQ(hdp_error_key({"parallel.hdp=true", "parallel.pipeline_model_parallel_size=2",
                           "pipeline.schedule=interleaved_1f1b"}),
            "pipeline.schedule");
}

TEST(HdpConfig, RondoPlanComparesThePoliciesAndRunRefusesWhatHdpDoesNotCombineWith) {
  const std::string cfg = std::string(RONDO_SOURCE_DIR) + "/bench/hdp_64.yaml";
  const auto plan = testing::run_rondo("plan " + cfg + " --json --steps 3");
  ASSERT_EQ(plan.status, 0) << plan.output;
  const auto j = nlohmann::json::parse(plan.output);
  for (const char* policy : {"static", "megatron", "rondo"}) {
    const auto& p = j.at("hdp").at(policy);
    EXPECT_GE(p.at("step_time").get<double>(), p.at("lower_bound").get<double>() * (1 - 1e-9)) << policy;
    EXPECT_GE(p.at("busy_max_over_mean").get<double>(), 1.0) << policy;
    EXPECT_GT(p.at("planner_seconds").get<double>(), 0.0) << policy;
  }
  EXPECT_EQ(j.at("hdp_batches").at("batches"), 3);
  // With pipelines the policies plan over them and their steps are simulated on every stage.
  const auto piped =
      testing::run_rondo("plan " + cfg + " --json --steps 2 --set parallel.pipeline_model_parallel_size=4");
  ASSERT_EQ(piped.status, 0) << piped.output;
  const auto k = nlohmann::json::parse(piped.output);
  EXPECT_EQ(k.at("hdp_batches").at("pipelines"), 16);
  EXPECT_EQ(k.at("hdp_batches").at("stages"), 4);
  const auto& rondo = k.at("hdp").at("rondo");
  EXPECT_GE(rondo.at("step_time").get<double>(), rondo.at("lower_bound").get<double>() * (1 - 1e-9));
  for (const char* baseline : {"static", "megatron"})
    EXPECT_LT(rondo.at("step_time").get<double>(), k.at("hdp").at(baseline).at("step_time").get<double>());
  const auto text = testing::run_rondo("plan " + cfg + " --steps 2");
  EXPECT_EQ(text.status, 0);
  EXPECT_NE(text.output.find("rondo"), std::string::npos);
  EXPECT_NE(text.output.find("<- parallel.hdp_policy"), std::string::npos) << text.output;
  // Refused before anything is launched, naming the key.
  for (const char* set : {"data.chunk_size=1024", "pipeline.async=true", "training.device=cuda"}) {
    const auto run = testing::run_rondo("run " + cfg + " --set " + set + " --run-dir /tmp/rondo-hdp-refused");
    EXPECT_NE(run.status, 0) << set;
    const std::string key = std::string(set).substr(0, std::string(set).find('='));
    EXPECT_NE(run.output.find(key + ": with parallel.hdp"), std::string::npos) << run.output;
  }
}

}  // namespace
}  // namespace rondo

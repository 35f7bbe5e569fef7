// `rondo simulate` as a user runs it: JSON report, pictures, CSV export and import, errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/unit/rondo_cli.h"

namespace {

using rondo::testing::run_rondo;
namespace fs = std::filesystem;

nlohmann::json simulate_json(const std::string& args) {
  const auto r = run_rondo("simulate --json " + args);
  EXPECT_EQ(r.status, 0) << r.output;
  return nlohmann::json::parse(r.output);
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(SimulateCli, JsonReportsTheDocumentedFields) {
  const auto j = simulate_json("--schedule 1f1b --pp 8 --microbatches 16");
  for (const char* key : {"schedule", "pp", "microbatches", "virtual", "makespan", "bubble_fraction",
                          "peak_activations", "exposed_comm"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_NEAR(j["bubble_fraction"].get<double>(), 7.0 / 23.0, 1e-9);
  EXPECT_NEAR(j["analytic_bubble"].get<double>(), 7.0 / 23.0, 1e-12);
  EXPECT_EQ(j["peak_activations"].size(), 8u);
  EXPECT_EQ(j["peak_activations"][0], 8.0);
}

TEST(SimulateCli, VirtualStagesAndCommunication) {
  const auto j = simulate_json("--schedule interleaved_1f1b --pp 8 --microbatches 16 --virtual 4");
  EXPECT_NEAR(j["bubble_fraction"].get<double>(), 7.0 / 71.0, 1e-9);
  const auto c = simulate_json(
      "--schedule 1f1b --pp 4 --microbatches 8 --p2p-latency 0.1 --p2p-bandwidth 1e6 --p2p-bytes 1e5");
  EXPECT_GT(c["exposed_comm"].get<double>(), 0.0);
  EXPECT_FALSE(c.contains("analytic_bubble"));  // no closed form with communication
}

TEST(SimulateCli, LayerCostsAreGroupedIntoStages) {
  // Embedding, 6 layers, a heavy LM head: the partitioner isolates the head.
  const auto j = simulate_json("--schedule 1f1b --pp 4 --microbatches 8 --layer-costs 1,1,1,1,1,1,1,3");
  EXPECT_GT(j["bubble_fraction"].get<double>(), 3.0 / 11.0);  // uneven stages add bubble
}

TEST(SimulateCli, GanttAndCsvExportAndImport) {
  const fs::path dir = fs::temp_directory_path() / ("rondo-sim-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const auto r = run_rondo("simulate --schedule zb_h1 --pp 4 --microbatches 8 --gantt " +
                           (dir / "zb.svg").string() + " --csv " + (dir / "zb.csv").string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(slurp(dir / "zb.svg").rfind("<svg", 0), 0u);
  ASSERT_TRUE(fs::exists(dir / "zb.durations.csv"));
  const auto original = simulate_json("--schedule zb_h1 --pp 4 --microbatches 8");
  const auto imported = simulate_json("--import-csv " + (dir / "zb.csv").string() + " --import-durations " +
                                      (dir / "zb.durations.csv").string());
  EXPECT_DOUBLE_EQ(imported["makespan"].get<double>(), original["makespan"].get<double>());
  EXPECT_EQ(imported["pp"], 4);
  fs::remove_all(dir);
}

TEST(SimulateCli, BadOptionsExitTwoNamingTheOption) {
  auto r = run_rondo("simulate --schedule interleaved_1f1b --pp 4 --microbatches 6");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("microbatches"), std::string::npos) << r.output;
  r = run_rondo("simulate --schedule 1f1b --virtual 3");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--virtual"), std::string::npos) << r.output;
  r = run_rondo("simulate --schedule nope");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("pipeline.schedule"), std::string::npos) << r.output;
  r = run_rondo("simulate --layer-costs 1,x,3");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--layer-costs"), std::string::npos) << r.output;
  // A schedule of about 2e10 actions is refused at once, naming the flags and the estimate.
  r = run_rondo("simulate --schedule 1f1b --pp 100000 --microbatches 100000");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--pp 100000 x --microbatches 100000 makes about 2e+10 actions"), std::string::npos)
      << r.output;
}

// RoundPipe's simulator flags: the partition is checked against the layer count and the schedule.
TEST(SimulateCli, StagePartitionErrorsNameTheFlag) {
  const std::string times =
      " --fwd-time-per-layer 1 --bwd-time-per-layer 2 --lmhead-fwd-time 1 --lmhead-bwd-time 2 --comm-time "
      "0.1";
  const struct {
    std::string args, expect;
  } cases[] = {
      {"--scheduler 1f1b --num-gpus 2 --stage-partition 4,4 --num-layers 9", "--stage-partition"},
      {"--scheduler 1f1b --num-gpus 2 --stage-partition 4,x --num-layers 8", "'x'"},
      {"--scheduler 1f1b --num-gpus 2 --stage-partition 2,2,2,2 --num-layers 8", "--stage-partition"},
      {"--scheduler roundpipe --num-gpus 2 --stage-partition 4,4 --num-layers 8", "FORWARD|BACKWARD"},
      {"--scheduler 1f1b --num-gpus 2 --stage-partition '4,4|0,8' --num-layers 8", "only roundpipe"},
      {"--scheduler interleaved-1f1b --num-gpus 2 --stage-partition 2,3,3 --num-layers 8",
       "multiple of --pp"},
      {"--scheduler 1f1b --num-gpus 2 --num-layers 8", "--num-layers"},
  };
  for (const auto& c : cases) {
    const auto r = run_rondo("simulate " + c.args + times);
    EXPECT_EQ(r.status, 2) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.args << "\n" << r.output;
  }
}

TEST(SimulateCli, TakesRoundPipeSchedulerNamesAndSplitsTheBubble) {
  const auto j = simulate_json(
      "--scheduler looped-bfs --num-gpus 4 --num-microbatches 8 --stage-partition 1,1,1,1,1,1,1,1 "
      "--num-layers 8 --fwd-time-per-layer 1 --bwd-time-per-layer 2 --lmhead-fwd-time 0.5 "
      "--lmhead-bwd-time 1 --comm-time 0.1");
  EXPECT_EQ(j["schedule"], "looped_bfs");
  EXPECT_EQ(j["virtual"], 2);
  double sum = 0;
  for (const char* part : {"fill", "switch", "drain", "intra"}) sum += j["bubble_parts"][part].get<double>();
  EXPECT_NEAR(sum, j["bubble_fraction"].get<double>(), 1e-9);
  // Without recomputation each backward is shorter by its layers' forward.
  const auto none = simulate_json(
      "--scheduler looped-bfs --num-gpus 4 --num-microbatches 8 --stage-partition 1,1,1,1,1,1,1,1 "
      "--num-layers 8 --fwd-time-per-layer 1 --bwd-time-per-layer 2 --lmhead-fwd-time 0.5 "
      "--lmhead-bwd-time 1 --comm-time 0.1 --recompute none");
  double busy_full = 0, busy_none = 0;
  for (const auto& b : j["busy"]) busy_full += b.get<double>();
  for (const auto& b : none["busy"]) busy_none += b.get<double>();
  EXPECT_NEAR(busy_full - busy_none, 8 * 8 * 1.0, 1e-9);  // 8 microbatches x 8 layers x forward 1
}

}  // namespace

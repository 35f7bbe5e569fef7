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
}

}  // namespace

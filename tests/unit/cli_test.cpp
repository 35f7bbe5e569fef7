// The `rondo` binary itself: exit statuses and messages a user sees.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/unit/rondo_cli.h"

namespace {

using rondo::testing::run_rondo;

TEST(Cli, PlanJsonIsOneObject) {
  const auto r = run_rondo("plan --json");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["world_size"], 2);
  EXPECT_EQ(j["mesh"]["dp"], 2);
  EXPECT_TRUE(j.contains("num_microbatches"));
  EXPECT_EQ(j["ranks"].size(), 2u);
}

TEST(Cli, EachConfigErrorExitsTwoNamingItsKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--set model.bogus=1", "model.bogus"},
      {"--set model.num_layers=many", "model.num_layers"},
      {"--set parallel.world_size=3 --set parallel.pipeline_model_parallel_size=2", "parallel.world_size"},
      {"--set training.global_batch_size=12", "training.global_batch_size"},
      {"--set model.num_attention_heads=3", "model.num_attention_heads"},
      {"--set parallel.world_size=4 --set parallel.tensor_model_parallel_size=4 --set "
       "model.num_attention_heads=2",
       "parallel.tensor_model_parallel_size"},
      {std::string(RONDO_SOURCE_DIR) + "/no/such/config.yaml", "no/such/config.yaml"},
  };
  for (const auto& [args, key] : cases) {
    const auto r = run_rondo("plan " + args);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(key), std::string::npos) << args << "\n" << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << "one line: " << r.output;
  }
}

TEST(Cli, RunRefusesLayoutsTheWorkerCannotExecuteYet) {
  // Context parallelism runs, but not chunked: the refusal names the key to change.
  const auto r = run_rondo(
      "run --set parallel.world_size=2 --set parallel.context_parallel_size=2 --set data.chunk_size=128 "
      "--run-dir /tmp/rondo-cli-test-never");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("data.chunk_size"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("context_parallel_size 2"), std::string::npos) << r.output;
  const auto tp = run_rondo(
      "run --set parallel.world_size=2 --set parallel.tensor_model_parallel_size=2 --run-dir "
      "/tmp/rondo-cli-test-never");
  EXPECT_EQ(tp.status, 2) << tp.output;
  EXPECT_NE(tp.output.find("parallel.tensor_model_parallel_size"), std::string::npos) << tp.output;
}

TEST(Cli, ExampleConfigsPlan) {
  const auto r = run_rondo("plan " + std::string(RONDO_SOURCE_DIR) + "/configs/default.yaml --json");
  EXPECT_EQ(r.status, 0) << r.output;
}

}  // namespace

namespace {

TEST(Cli, CompareSchedulesPlansEachAndNamesWhyOneIsRefused) {
  const std::string pp4 =
      " --set parallel.world_size=4 --set parallel.pipeline_model_parallel_size=4 --set model.num_layers=8"
      " --set training.global_batch_size=32";
  auto r = rondo::testing::run_rondo("plan --compare-schedules" + pp4);
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* s : {"| gpipe |", "| 1f1b |", "| interleaved_1f1b (v=2) |", "| looped_bfs (v=2) |",
                        "| zb_h1 |", "| zbv |", "| roundpipe |"}) {
    EXPECT_NE(r.output.find(s), std::string::npos) << s << "\n" << r.output;
  }
  EXPECT_EQ(r.output.find("refused"), std::string::npos) << r.output;
  // Under a memory cap 1F1B cannot meet, it is refused with the key and RoundPipe is planned.
  r = rondo::testing::run_rondo("plan " + std::string(RONDO_SOURCE_DIR) +
                                "/bench/plan_16k.yaml --set pipeline.memory_cap_gb=80 --compare-schedules "
                                "1f1b,roundpipe");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("| 1f1b | — | — | — | refused: pipeline.memory_cap_gb"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("| roundpipe | "), std::string::npos) << r.output;
  EXPECT_LT(r.output.find("| roundpipe | "), r.output.find("| 1f1b |")) << "planned schedules come first";
}

}  // namespace

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
  const auto r = run_rondo(
      "run --set parallel.world_size=2 --set parallel.pipeline_model_parallel_size=2 --set "
      "pipeline.schedule=roundpipe "
      "--run-dir /tmp/rondo-cli-test-never");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("pipeline.schedule"), std::string::npos) << r.output;
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

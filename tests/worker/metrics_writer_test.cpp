// MetricsWriter: a row per step with the documented fields, the parts' own fields, the compute
// span of a synchronous step and of an asynchronous stream's period.
#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "worker/metrics_writer.h"

namespace rondo {
namespace {

namespace fs = std::filesystem;

std::vector<nlohmann::json> rows_of(const fs::path& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

MetricsWriter::Step step_at(int64_t step, double start_ns, double end_ns) {
  MetricsWriter::Step r;
  r.step = step;
  r.lr = 1e-3;
  r.step_s = 0.5;
  r.times.forward_s = 0.1;
  r.worst.first_compute_ns_negated = -start_ns;
  r.worst.last_compute_ns = end_ns;
  r.worst.max_rss_mb = 42;
  return r;
}

class MetricsWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("rondo-metrics-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  MetricsWriter::Options options(bool stream) {
    return {.path = (dir_ / "metrics.jsonl").string(),
            .first_step = 10,
            .train_iters = 100,
            .log_interval = 1,
            .tokens_per_step = 1000,
            .step_tokens = nullptr,
            .attempt = 2,
            .world_size = 2,
            .stream = stream,
            .predicted_bubble = [](const StepSums& s) { return s.compute_s / 100; },
            .tensorboard_dir = ""};
  }
  std::shared_ptr<spdlog::logger> log_ =
      std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::null_sink_mt>());
  fs::path dir_;
};

TEST_F(MetricsWriterTest, ARowPerStepWithTheCoreFieldsThePartsFieldsAndTheBubble) {
  MetricsWriter w(options(false), log_);
  w.add_fields([](const MetricsWriter::Step& r, nlohmann::json& row) { row["part"] = r.step * 2; });
  StepSums sums{.grad_norm_squared = 9, .loss = 3.5, .compute_s = 1.5, .targets = 64};
  w.write(step_at(11, 1e9, 2e9), sums);
  sums.loss = 3.0;
  w.write(step_at(12, 3e9, 4e9), sums);
  w.log_summary();
  const auto rows = rows_of(dir_ / "metrics.jsonl");
  ASSERT_EQ(rows.size(), 2u);
  const auto& r = rows[0];
  EXPECT_EQ(r["step"], 11);
  EXPECT_EQ(r["attempt"], 2);
  EXPECT_EQ(r["loss"], 3.5);
  EXPECT_EQ(r["grad_norm"], 3.0);
  EXPECT_EQ(r["tokens_per_s"], 2000.0);
  EXPECT_EQ(r["targets"], 64.0);
  EXPECT_EQ(r["max_rss_mb"], 42.0);
  EXPECT_EQ(r["part"], 22);
  EXPECT_DOUBLE_EQ(r["compute_span_s"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(r["bubble_fraction"].get<double>(), 1.0 - 1.5 / 2.0);
  EXPECT_DOUBLE_EQ(r["bubble_fraction_predicted"].get<double>(), 0.015);
  EXPECT_EQ(rows[1]["loss"], 3.0);
}

TEST_F(MetricsWriterTest, StepsWhoseTokensVaryCountTheirOwn) {
  auto o = options(false);
  double tokens = 300;
  o.step_tokens = [&tokens] { return tokens; };
  MetricsWriter w(o, log_);
  w.write(step_at(11, 1e9, 2e9), StepSums{});
  tokens = 500;
  w.write(step_at(12, 3e9, 4e9), StepSums{});
  const auto rows = rows_of(dir_ / "metrics.jsonl");
  EXPECT_EQ(rows[0]["tokens"], 300.0);
  EXPECT_EQ(rows[0]["tokens_per_s"], 600.0);
  EXPECT_EQ(rows[1]["tokens_per_s"], 1000.0);
}

TEST_F(MetricsWriterTest, AStreamsSpanIsItsPeriodFromThePreviousStepsLastComputeEnd) {
  MetricsWriter w(options(true), log_);
  const StepSums sums{.compute_s = 1.0};
  w.write(step_at(11, 1e9, 2e9), sums);
  w.write(step_at(12, 1.5e9, 2.8e9), sums);  // windows overlap across steps
  const auto rows = rows_of(dir_ / "metrics.jsonl");
  EXPECT_DOUBLE_EQ(rows[0]["compute_span_s"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(rows[1]["compute_span_s"].get<double>(), 0.8);
}

}  // namespace
}  // namespace rondo

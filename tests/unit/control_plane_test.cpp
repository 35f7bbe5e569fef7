// The control plane in one process: a real gRPC server on loopback and real clients. Registration,
// reports, heartbeats with commands, and every kind of bad call refused, counted, and survived.
#include <gtest/gtest.h>

#include <optional>

#include <thread>

#include <grpcpp/grpcpp.h>

#include "common/errors.h"
#include "control/control_channel.h"
#include "control/control_client.h"
#include "control/control_metadata.h"
#include "control/control_server.h"
#include "control/job_state.h"
#include "orchestrator/status_command.h"
#include "proto/control.grpc.pb.h"

namespace rondo {
namespace {

using namespace std::chrono_literals;

uint64_t refused(const JobState& state, const char* reason) {
  return state.to_json()["refused_calls"].value(reason, uint64_t{0});
}

struct ControlPlane : ::testing::Test {
  JobState state{"/tmp/run", 2, 100};
  std::unique_ptr<ControlServer> server;
  void SetUp() override {
    ControlServerOptions o;
    o.token = "secret";
    o.max_message_bytes = 64 << 10;
    o.heartbeat_interval_s = 0.05;
    server = std::make_unique<ControlServer>(state, o);
  }
};

TEST_F(ControlPlane, WorkersRegisterReportAndReceiveCommands) {
  EXPECT_EQ(server->address().rfind("127.0.0.1:", 0), 0u);
  ControlClient client({server->address(), "secret", ""}, 1, 0);
  control::RegisterRequest info;
  info.set_host("node7");
  info.set_pid(4242);
  client.register_rank(info, 10s);
  ASSERT_TRUE(state.registration(1).has_value());
  EXPECT_EQ(state.registration(1)->host(), "node7");

  std::mutex mu;
  std::vector<control::Command::Kind> got;
  client.start([&](const control::Command& c) {
    std::lock_guard lock(mu);
    got.push_back(c.kind());
  });
  state.command(control::Command::CHECKPOINT_NOW, 1);
  state.command(control::Command::STOP, 0);  // for another rank
  report::StepReport r;
  r.set_step(3);
  r.set_loss(2.5);
  r.set_step_time_s(0.25);
  r.set_tokens_per_s(1000);
  auto* c = r.add_collectives();
  c->set_op("allreduce");
  auto* conn = c->add_connections();
  conn->set_send_peer(0);
  conn->set_total_ns(2'000'000);
  client.queue_report(r);
  for (int i = 0; i < 200 && (state.last_step() < 3 || got.empty()); ++i) std::this_thread::sleep_for(10ms);
  {
    std::lock_guard lock(mu);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0], control::Command::CHECKPOINT_NOW);
  }
  const auto j = state.to_json();
  EXPECT_EQ(j["progress"]["step"], 3);
  EXPECT_DOUBLE_EQ(j["progress"]["loss"].get<double>(), 2.5);
  EXPECT_DOUBLE_EQ(j["collective_matrix"][1][0].get<double>(), 0.002);
  EXPECT_DOUBLE_EQ(j["step_time_heatmap"]["rows"][1][0].get<double>(), 0.25);
  const auto prom = state.prometheus();
  EXPECT_NE(prom.find("rondo_loss 2.5\n"), std::string::npos) << prom;
  EXPECT_NE(prom.find("rondo_step_time_seconds{rank=\"1\"} 0.25\n"), std::string::npos) << prom;
  EXPECT_NE(prom.find("rondo_collective_seconds{op=\"allreduce\",src=\"1\",dst=\"0\"} 0.002\n"),
            std::string::npos);

  report::WorkerStatus st;
  st.set_state(report::FAILED);
  st.set_failure(report::COMM_TIMEOUT);
  st.set_peer(0);
  EXPECT_TRUE(client.send_status(st));
  ASSERT_EQ(state.failed_statuses().size(), 1u);
  EXPECT_EQ(state.failed_statuses()[0].rank(), 1);
  EXPECT_EQ(state.failed_statuses()[0].failure(), report::COMM_TIMEOUT);
}

TEST_F(ControlPlane, AReportIsAHeartbeatItsReplyCarriesTheRanksCommands) {
  state.command(control::Command::CHECKPOINT_NOW, 1);
  auto stub = control::Control::NewStub(control_channel(server->address(), ""));
  control::ReportRequest req;
  req.set_rank(1);
  req.set_state(report::DONE);
  req.add_reports()->set_step(7);
  grpc::ClientContext ctx;
  ctx.AddMetadata(kTokenMetadata, "secret");
  ctx.AddMetadata(kRankMetadata, "1");
  ctx.AddMetadata(kAttemptMetadata, "0");
  ctx.AddMetadata(kLengthMetadata, std::to_string(req.ByteSizeLong()));
  control::HeartbeatReply reply;
  ASSERT_TRUE(stub->Report(&ctx, req, &reply).ok());
  ASSERT_EQ(reply.commands_size(), 1);
  EXPECT_EQ(reply.commands(0).kind(), control::Command::CHECKPOINT_NOW);
  const auto rank = state.to_json()["ranks"][1];
  EXPECT_EQ(rank["step"], 7);
  EXPECT_EQ(rank["state"], "DONE");
  control::HeartbeatRequest beat;  // delivered once
  beat.set_rank(1);
  EXPECT_TRUE(state.heartbeat(beat).empty());
}

TEST_F(ControlPlane, BadCallsAreRefusedCountedAndSurvived) {
  const ControlEndpoint job{server->address(), "secret", ""};
  // A wrong token and none at all.
  EXPECT_THROW(ControlClient({job.address, "guess", ""}, 0, 0).register_rank({}, 5s), Error);
  control::HeartbeatRequest beat;
  beat.set_rank(0);
  EXPECT_EQ(raw_control_call({job.address, "", ""}, "Heartbeat", beat.SerializeAsString(), 0, 0,
                             beat.ByteSizeLong()),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(refused(state, "token"), 2u);
  // A rank the job does not have, and one of another attempt.
  EXPECT_THROW(ControlClient(job, 7, 0).register_rank({}, 5s), Error);
  EXPECT_THROW(ControlClient(job, 0, 3).register_rank({}, 5s), Error);
  EXPECT_EQ(refused(state, "unknown_rank"), 1u);
  EXPECT_EQ(refused(state, "stale_attempt"), 1u);
  // Bytes that are no protobuf message, and a message over the limit.
  EXPECT_EQ(raw_control_call(job, "Report", std::string("\xff\xff\xff\xff garbage", 13), 0, 0, 13),
            grpc::StatusCode::INVALID_ARGUMENT);
  control::ReportRequest big;
  big.add_reports()->mutable_collectives()->Add()->set_op(std::string(100 << 10, 'x'));
  EXPECT_EQ(raw_control_call(job, "Report", big.SerializeAsString(), 0, 0, big.ByteSizeLong()),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(refused(state, "malformed"), 1u);
  EXPECT_EQ(refused(state, "oversized"), 1u);
  EXPECT_NE(state.prometheus().find("rondo_rejected_calls_total{reason=\"token\"} 2\n"), std::string::npos);
  // Still serving the job's own ranks.
  ControlClient good(job, 0, 0);
  EXPECT_NO_THROW(good.register_rank({}, 5s));
  EXPECT_EQ(state.registered_count(), 1);
}

TEST_F(ControlPlane, OperatorsCommandTheJobWithTheTokenOnly) {
  const ControlEndpoint job{server->address(), "secret", ""};
  EXPECT_THROW(send_operator_command({job.address, "guess", ""}, control::Command::STOP, ""), Error);
  EXPECT_THROW(send_operator_command(job, control::Command::DUMP_FLIGHT, ""), Error);
  EXPECT_EQ(refused(state, "token"), 1u);
  EXPECT_EQ(refused(state, "malformed"), 1u);
  send_operator_command(job, control::Command::CHECKPOINT_NOW, "before the upgrade");
  // Rank 0 alone gets it: the trainer spreads it to every rank at one step.
  for (int r = 0; r < 2; ++r) {
    control::HeartbeatRequest beat;
    beat.set_rank(r);
    const auto commands = state.heartbeat(beat);
    ASSERT_EQ(commands.size(), r == 0 ? 1u : 0u) << "rank " << r;
    if (r == 0) {
      EXPECT_EQ(commands[0].kind(), control::Command::CHECKPOINT_NOW);
    }
  }
  const auto events = state.to_json()["events"];
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["reason"], "before the upgrade");
}

TEST(JobState, StatusTextShowsProgressRanksAndStaleness) {
  JobState state("/runs/a", 2, 100);
  control::RegisterRequest reg;
  reg.set_rank(1);
  reg.set_host("node7");
  reg.set_pid(99);
  state.registered(reg);
  report::StepReport r;
  r.set_rank(1);
  r.set_step(40);
  r.set_loss(2.25);
  r.set_step_time_s(0.5);
  r.set_tokens_per_s(2000);
  state.add_report(r);
  state.set_phase("running");
  const auto fresh = status_text(state.to_json(), 1.0);
  EXPECT_NE(fresh.find("status:   running, attempt 0"), std::string::npos) << fresh;
  EXPECT_NE(fresh.find("progress: step 40/100, loss 2.2500, 2000 tokens/s, ETA 30 s"), std::string::npos)
      << fresh;
  EXPECT_NE(fresh.find("pid 99 on node7, step time 500.0 ms"), std::string::npos) << fresh;
  const auto stale = status_text(state.to_json(), 60.0);
  EXPECT_NE(stale.find("no update for 60 s: is the coordinator gone?"), std::string::npos) << stale;
  state.set_phase("finished");
  EXPECT_EQ(status_text(state.to_json(), 600.0).find("coordinator gone"), std::string::npos);
}

TEST(JobState, EvaluationsRideOnStepReportsIntoTheSeriesProgressAndMetrics) {
  JobState state("/runs/a", 1, 100);
  const auto report = [&](int64_t step, double loss, std::optional<std::pair<int64_t, double>> validation) {
    report::StepReport r;
    r.set_rank(0);
    r.set_step(step);
    r.set_loss(loss);
    r.set_step_time_s(0.1);
    if (validation) {
      r.mutable_validation()->set_step(validation->first);
      r.mutable_validation()->set_loss(validation->second);
    }
    state.add_report(r);
  };
  report(1, 5.0, std::nullopt);
  EXPECT_FALSE(state.to_json()["progress"].contains("val_loss"));
  EXPECT_EQ(state.prometheus().find("rondo_val_loss"), std::string::npos);
  report(2, 4.5, std::pair{2, 4.75});
  report(3, 4.0, std::nullopt);
  report(5, 3.5, std::pair{4, 4.25});  // an asynchronous stream's: the step before
  const auto j = state.to_json();
  EXPECT_EQ(j["series"]["val_step"], nlohmann::json({2, 4}));
  EXPECT_EQ(j["series"]["val_loss"], nlohmann::json({4.75, 4.25}));
  EXPECT_EQ(j["progress"]["val_loss"], 4.25);
  EXPECT_EQ(j["progress"]["val_step"], 4);
  const auto metrics = state.prometheus();
  EXPECT_NE(metrics.find("rondo_val_loss 4.25\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("rondo_val_step 4\n"), std::string::npos) << metrics;
  const auto text = status_text(j, 1.0);
  EXPECT_NE(text.find(", val loss 4.2500 (step 4)"), std::string::npos) << text;
}

TEST(JobState, TheHeatmapWindowSlidesJumpsAndRestarts) {
  JobState state("/runs/a", 1, 100000);
  const auto report = [&](int64_t step, double seconds) {
    report::StepReport r;
    r.set_rank(0);
    r.set_step(step);
    r.set_step_time_s(seconds);
    state.add_report(r);
  };
  const auto heat = [&] { return state.to_json()["step_time_heatmap"]; };
  for (int64_t s = 1; s <= 70; ++s) report(s, 0.1);
  EXPECT_EQ(heat()["first_step"], 11);
  EXPECT_EQ(heat()["rows"][0].size(), JobState::kStepTimeWindow);
  report(5000, 0.2);  // a gap far wider than the window (reports lost)
  EXPECT_EQ(heat()["first_step"], 5000 - static_cast<int64_t>(JobState::kStepTimeWindow) + 1);
  EXPECT_TRUE(heat()["rows"][0][0].is_null());
  EXPECT_DOUBLE_EQ(heat()["rows"][0].back().get<double>(), 0.2);
  report(4000, 0.3);  // a restart went back to an earlier checkpoint
  EXPECT_EQ(heat()["first_step"], 4000);
  EXPECT_DOUBLE_EQ(heat()["rows"][0][0].get<double>(), 0.3);
}

TEST(JobState, ARankThatStopsHeartbeatingIsSilent) {
  JobState state("/tmp/run", 2, 10);
  control::RegisterRequest r;
  r.set_rank(1);
  state.registered(r);
  EXPECT_TRUE(state.silent_ranks(1h).empty());
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(state.silent_ranks(10ms), std::vector<int>{1});
  state.begin_attempt(1);  // a new launch forgets the old registrations
  EXPECT_TRUE(state.silent_ranks(10ms).empty());
}

TEST(JobState, ARestartWithFewerRanksRenumbersTheJob) {
  JobState state("/tmp/run", 3, 10);
  control::RegisterRequest r;
  r.set_rank(2);
  state.registered(r);
  EXPECT_EQ(state.registered_count(), 1);
  state.begin_attempt(1, 2);  // faults.policy restart left a rank out
  EXPECT_EQ(state.world_size(), 2);
  EXPECT_EQ(state.admit(2, 1), JobState::Refusal::kUnknownRank);
  EXPECT_EQ(state.admit(1, 1), std::nullopt);
  EXPECT_EQ(state.unregistered_ranks(), (std::vector<int>{0, 1}));
  EXPECT_EQ(state.to_json()["world_size"], 2);
  EXPECT_EQ(state.to_json()["ranks"].size(), 2u);
}

}  // namespace
}  // namespace rondo

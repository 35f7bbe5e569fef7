// control_load: load and abuse for the coordinator's control plane (bench/coordinator_bench.py
// drives it; system.dashboard uses `bad`).
//   control_load serve --world N            a coordinator's JobState + ControlServer; prints its
//                                           address and token, serves until stdin closes, then
//                                           prints its report count as JSON
//   control_load load --address A --token T --ranks N --seconds S [--threads K] [--records R]
//                                           N simulated workers: each registers, then sends one
//                                           step report (R flight records) per second, which is
//                                           its heartbeat too; prints call-latency percentiles
//                                           as JSON
//   control_load bad --address A --token T  one call of each kind the coordinator must refuse;
//                                           prints each one's status code as JSON
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/logging.h"
#include "control/control_channel.h"
#include "control/control_client.h"
#include "control/control_metadata.h"
#include "control/control_server.h"
#include "control/job_state.h"
#include "proto/control.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

int serve(int world) {
  rondo::JobState state("bench", world, 1'000'000);
  rondo::ControlServerOptions o;
  o.token = "bench-token";
  rondo::ControlServer server(state, o);
  std::printf("{\"address\": \"%s\", \"token\": \"%s\"}\n", server.address().c_str(), o.token.c_str());
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  // What the dashboard's /api/state and state.json cost the coordinator each second at this size.
  const auto t0 = Clock::now();
  const auto j = state.to_json();
  const double to_json_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const auto t1 = Clock::now();
  const std::string text = j.dump();
  const double dump_s = std::chrono::duration<double>(Clock::now() - t1).count();
  std::printf("{\"reports\": %llu, \"state_s\": %.4f, \"state_bytes\": %zu}\n",
              static_cast<unsigned long long>(j["reports"].get<uint64_t>()), to_json_s + dump_s, text.size());
  return 0;
}

rondo::report::StepReport sample_report(int rank, int64_t step, int records, int world) {
  rondo::report::StepReport r;
  r.set_step(step);
  r.set_step_time_s(0.1);
  r.set_loss(2.5);
  r.set_tokens_per_s(1e5);
  for (int i = 0; i < records; ++i) {
    auto* c = r.add_collectives();
    c->set_seq(static_cast<uint64_t>(step * records + i));
    c->set_op("allreduce");
    c->set_bytes(1 << 20);
    c->set_group_size(world);
    c->set_completed(true);
    auto* conn = c->add_connections();
    conn->set_send_peer((rank + 1) % world);
    conn->set_recv_peer((rank + world - 1) % world);
    conn->set_steps(2);
    conn->set_total_ns(1'000'000);
  }
  return r;
}

// A simulated rank's call metadata (control/control_metadata.h): the token, the request's length,
// its rank, attempt 0.
void identify(grpc::ClientContext& ctx, const std::string& token, const google::protobuf::Message& request,
              int rank) {
  ctx.AddMetadata(rondo::kTokenMetadata, token);
  ctx.AddMetadata(rondo::kLengthMetadata, std::to_string(request.ByteSizeLong()));
  ctx.AddMetadata(rondo::kRankMetadata, std::to_string(rank));
  ctx.AddMetadata(rondo::kAttemptMetadata, "0");
}

int load(const std::string& address, const std::string& token, int ranks, double seconds, int threads,
         int records) {
  grpc::ChannelArguments args;
  // Several connections, as many workers would open.
  std::vector<std::unique_ptr<rondo::control::Control::Stub>> clients;
  for (int i = 0; i < std::max(1, threads / 4); ++i) {
    args.SetInt("rondo.channel", i);  // distinct arguments: distinct connections
    clients.push_back(rondo::control::Control::NewStub(rondo::control_channel(address, "", args)));
  }
  const auto call_deadline = [] { return std::chrono::system_clock::now() + 10s; };
  std::mutex mu;
  std::vector<double> latencies;
  std::atomic<int> failures{0};
  const auto start = Clock::now() + 2s;  // every worker registered by then
  const auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      auto& client = *clients[static_cast<size_t>(t) % clients.size()];
      std::vector<int> mine;
      for (int r = t; r < ranks; r += threads) mine.push_back(r);
      for (int r : mine) {
        rondo::control::RegisterRequest req;
        req.set_rank(r);
        req.set_host("sim");
        grpc::ClientContext ctx;
        identify(ctx, token, req, r);
        ctx.set_deadline(call_deadline());
        ctx.set_wait_for_ready(true);  // as a worker registers: the connection may still be coming up
        rondo::control::RegisterReply reply;
        if (!client.Register(&ctx, req, &reply).ok()) ++failures;
      }
      std::vector<double> local;
      // Each rank reports once a second, spread evenly over the second.
      for (int64_t step = 1;; ++step) {
        for (size_t i = 0; i < mine.size(); ++i) {
          const auto due = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                                       static_cast<double>(step - 1) + static_cast<double>(i) / mine.size()));
          if (due >= end) goto done;
          std::this_thread::sleep_until(due);
          rondo::control::ReportRequest req;
          req.set_rank(mine[i]);
          *req.add_reports() = sample_report(mine[i], step, records, ranks);
          grpc::ClientContext ctx;
          identify(ctx, token, req, mine[i]);
          ctx.set_deadline(call_deadline());
          // The reply carries the rank's commands: a worker reporting every interval sends no
          // separate heartbeat (control/control_client.h).
          rondo::control::HeartbeatReply reply;
          const bool ok = client.Report(&ctx, req, &reply).ok();
          // Latency from when the report was due: a coordinator that falls behind shows here.
          local.push_back(std::chrono::duration<double>(Clock::now() - due).count());
          if (!ok) ++failures;
        }
      }
    done:
      std::lock_guard lock(mu);
      latencies.insert(latencies.end(), local.begin(), local.end());
    });
  }
  for (auto& t : pool) t.join();
  std::sort(latencies.begin(), latencies.end());
  const auto pct = [&](double p) {
    return latencies.empty()
               ? 0.0
               : latencies[std::min(latencies.size() - 1, static_cast<size_t>(p * latencies.size()))];
  };
  nlohmann::json out = {{"ranks", ranks},
                        {"reports", latencies.size()},
                        {"failures", failures.load()},
                        {"p50_s", pct(0.50)},
                        {"p99_s", pct(0.99)},
                        {"max_s", pct(1.0)},
                        {"reports_per_s", static_cast<double>(latencies.size()) / seconds}};
  std::cout << out.dump() << std::endl;
  return 0;
}

int bad(const std::string& address, const std::string& token) {
  const rondo::ControlEndpoint job{address, token, ""}, wrong{address, token + "-wrong", ""},
      none{address, "", ""};
  rondo::control::HeartbeatRequest beat;
  beat.set_rank(0);
  rondo::control::HeartbeatRequest stranger;
  stranger.set_rank(1 << 20);
  rondo::control::ReportRequest big;
  big.add_reports()->add_collectives()->set_op(std::string(5 << 20, 'x'));  // over the 4 MiB limit
  // Each declares its body's length, as the job's own clients do.
  const auto call = [](const rondo::ControlEndpoint& e, const char* method, const std::string& body,
                       int rank) { return rondo::raw_control_call(e, method, body, rank, 0, body.size()); };
  nlohmann::json out = {
      {"wrong_token", call(wrong, "Heartbeat", beat.SerializeAsString(), 0)},
      {"no_token", call(none, "Heartbeat", beat.SerializeAsString(), 0)},
      {"unknown_rank", call(job, "Heartbeat", stranger.SerializeAsString(), 1 << 20)},
      {"garbage", call(job, "Report", std::string("\xff\xfe\xfd garbage \x00\x01", 14), 0)},
      {"oversized", call(job, "Report", big.SerializeAsString(), 0)},
  };
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"control_load: load and abuse for rondo's control plane"};
  app.require_subcommand(1);
  int world = 1000, ranks = 1000, threads = 16, records = 8;
  double seconds = 10;
  std::string address, token;
  auto* serve_cmd = app.add_subcommand("serve", "a coordinator's control plane alone");
  serve_cmd->add_option("--world", world);
  auto* load_cmd = app.add_subcommand("load", "simulated workers reporting at 1 Hz");
  load_cmd->add_option("--address", address)->required();
  load_cmd->add_option("--token", token)->required();
  load_cmd->add_option("--ranks", ranks);
  load_cmd->add_option("--seconds", seconds);
  load_cmd->add_option("--threads", threads);
  load_cmd->add_option("--records", records, "flight records per report");
  auto* bad_cmd = app.add_subcommand("bad", "calls the coordinator must refuse");
  bad_cmd->add_option("--address", address)->required();
  bad_cmd->add_option("--token", token)->required();
  CLI11_PARSE(app, argc, argv);
  rondo::logging::init(-1);
  spdlog::set_level(spdlog::level::err);  // refusals are logged as warnings: thousands under load
  if (*serve_cmd) return serve(world);
  if (*load_cmd) return load(address, token, ranks, seconds, threads, records);
  return bad(address, token);
}

#include "control/control_client.h"

#include <cstdlib>
#include <optional>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "common/errors.h"
#include "common/logging.h"
#include "control/control_channel.h"
#include "control/control_metadata.h"
#include "proto/control.grpc.pb.h"

namespace rondo {

// The gRPC side, kept out of the header.
struct ControlClient::Connection {
  std::unique_ptr<control::Control::Stub> service;
};

namespace {

// Reports sent per call: a backlog after a slow coordinator goes out in a few calls, each small.
constexpr size_t kReportsPerCall = 64;

std::chrono::system_clock::time_point deadline_in(std::chrono::duration<double> d) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(d);
}

// The metadata of a call: the token (none when empty), the body's length (when known) and, for a
// rank's call, its rank and attempt.
void identify(grpc::ClientContext& ctx, const std::string& token, std::optional<size_t> bytes, int rank,
              int attempt) {
  if (!token.empty()) ctx.AddMetadata(kTokenMetadata, token);
  if (bytes) ctx.AddMetadata(kLengthMetadata, std::to_string(*bytes));
  if (rank < 0) return;
  ctx.AddMetadata(kRankMetadata, std::to_string(rank));
  ctx.AddMetadata(kAttemptMetadata, std::to_string(attempt));
}

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

}  // namespace

std::unique_ptr<ControlClient> ControlClient::from_environment(int rank) {
  const std::string address = environment("RONDO_CONTROL_ADDRESS");
  if (address.empty()) return nullptr;
  const std::string attempt = environment("RONDO_ATTEMPT");
  return std::make_unique<ControlClient>(
      ControlEndpoint{address, environment("RONDO_JOB_TOKEN"), environment("RONDO_CONTROL_CERT_SHA256")},
      rank, attempt.empty() ? 0 : std::atoi(attempt.c_str()));
}

ControlClient::ControlClient(ControlEndpoint endpoint, int rank, int attempt)
    : endpoint_(std::move(endpoint)), rank_(rank), attempt_(attempt) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(64 << 20);
  connection_ = std::make_unique<Connection>();
  connection_->service =
      control::Control::NewStub(control_channel(endpoint_.address, endpoint_.cert_sha256, args));
}

template <class Call>
bool ControlClient::acknowledged(const google::protobuf::Message& request, Call call) {
  grpc::ClientContext ctx;
  identify(ctx, endpoint_.token, request.ByteSizeLong(), rank_, attempt_);
  ctx.set_deadline(deadline_in(kControlCallDeadline));
  control::Ack ack;
  return call(&ctx, &ack).ok();
}

ControlClient::~ControlClient() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ControlClient::register_rank(control::RegisterRequest request, std::chrono::duration<double> deadline) {
  request.set_rank(rank_);
  request.set_attempt(attempt_);
  grpc::ClientContext ctx;
  identify(ctx, endpoint_.token, request.ByteSizeLong(), rank_, attempt_);
  ctx.set_deadline(deadline_in(deadline));
  ctx.set_wait_for_ready(true);  // the coordinator may still be coming up
  control::RegisterReply reply;
  const auto status = connection_->service->Register(&ctx, request, &reply);
  if (!status.ok()) {
    throw Error(
        "rank " + std::to_string(rank_) + ": the coordinator at " + endpoint_.address +
        " (RONDO_CONTROL_ADDRESS) refused or did not answer the registration: " + status.error_message());
  }
  if (reply.heartbeat_interval_s() > 0)
    heartbeat_interval_ = std::chrono::duration<double>(reply.heartbeat_interval_s());
}

void ControlClient::start(std::function<void(const control::Command&)> on_command) {
  on_command_ = std::move(on_command);
  thread_ = std::thread([this] { loop(); });
}

void ControlClient::queue_report(report::StepReport report) {
  report.set_rank(rank_);
  report.set_attempt(attempt_);
  {
    std::lock_guard lock(mu_);
    queued_.push_back(std::move(report));
  }
  wake_.notify_all();
}

ControlClient::Flush ControlClient::flush_reports() {
  std::vector<report::StepReport> batch;
  {
    std::lock_guard lock(mu_);
    batch.swap(queued_);
  }
  Flush flush;
  for (size_t i = 0; i < batch.size(); i += kReportsPerCall) {
    control::ReportRequest req;
    req.set_rank(rank_);
    req.set_attempt(attempt_);
    req.set_state(static_cast<report::WorkerState>(state_.load()));
    for (size_t k = i; k < std::min(batch.size(), i + kReportsPerCall); ++k)
      *req.add_reports() = std::move(batch[k]);
    grpc::ClientContext ctx;
    identify(ctx, endpoint_.token, req.ByteSizeLong(), rank_, attempt_);
    ctx.set_deadline(deadline_in(kControlCallDeadline));
    control::HeartbeatReply reply;
    if (!connection_->service->Report(&ctx, req, &reply).ok()) {
      flush.failed = true;  // dropped: metrics.jsonl and the logs keep the record
      return flush;
    }
    flush.delivered = true;
    take_commands(reply);
  }
  return flush;
}

void ControlClient::take_commands(const control::HeartbeatReply& reply) {
  for (const auto& c : reply.commands()) {
    if (on_command_) on_command_(c);
  }
}

void ControlClient::loop() {
  auto log = logging::get("control");
  auto next_beat = std::chrono::steady_clock::now();
  bool warned = false;
  for (;;) {
    bool stopping;
    {
      std::unique_lock lock(mu_);
      wake_.wait_until(lock, next_beat, [&] { return stopping_ || !queued_.empty(); });
      stopping = stopping_;
    }
    const Flush flush = flush_reports();
    if (flush.failed && !warned) {
      log->warn("rank {}: step reports to the coordinator at {} failed; it will miss them", rank_,
                endpoint_.address);
      warned = true;
    }
    if (stopping) return;
    // A delivered report is a heartbeat (its reply carries the commands): the next beat is due an
    // interval after it. A job whose steps are shorter than the interval sends none.
    if (flush.delivered) {
      next_beat = std::chrono::steady_clock::now() +
                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(heartbeat_interval_);
    }
    if (std::chrono::steady_clock::now() < next_beat) continue;
    next_beat = std::chrono::steady_clock::now() +
                std::chrono::duration_cast<std::chrono::steady_clock::duration>(heartbeat_interval_);
    control::HeartbeatRequest req;
    req.set_rank(rank_);
    req.set_attempt(attempt_);
    req.set_step(step_);
    req.set_state(static_cast<report::WorkerState>(state_.load()));
    grpc::ClientContext ctx;
    identify(ctx, endpoint_.token, req.ByteSizeLong(), rank_, attempt_);
    ctx.set_deadline(deadline_in(kControlCallDeadline));
    control::HeartbeatReply reply;
    if (connection_->service->Heartbeat(&ctx, req, &reply).ok()) take_commands(reply);
  }
}

bool ControlClient::send_status(report::WorkerStatus status) {
  status.set_rank(rank_);
  status.set_attempt(attempt_);
  control::StatusRequest req;
  *req.mutable_status() = std::move(status);
  return acknowledged(req, [&](grpc::ClientContext* ctx, control::Ack* ack) {
    return connection_->service->Status(ctx, req, ack);
  });
}

bool ControlClient::send_flight(report::FlightDump dump) {
  dump.set_rank(rank_);
  dump.set_attempt(attempt_);
  control::FlightRequest req;
  *req.mutable_dump() = std::move(dump);
  return acknowledged(req, [&](grpc::ClientContext* ctx, control::Ack* ack) {
    return connection_->service->Flight(ctx, req, ack);
  });
}

void send_operator_command(const ControlEndpoint& endpoint, control::Command::Kind kind,
                           const std::string& reason) {
  auto service = control::Control::NewStub(control_channel(endpoint.address, endpoint.cert_sha256));
  control::CommandRequest req;
  req.set_kind(kind);
  req.set_reason(reason);
  grpc::ClientContext ctx;
  identify(ctx, endpoint.token, req.ByteSizeLong(), -1, 0);
  ctx.set_deadline(deadline_in(kControlCallDeadline));
  control::Ack ack;
  const auto status = service->Operate(&ctx, req, &ack);
  if (!status.ok()) {
    throw Error("the coordinator at " + endpoint.address + " did not take " +
                control::Command::Kind_Name(kind) + ": " + status.error_message());
  }
}

int raw_control_call(const ControlEndpoint& endpoint, const std::string& method, const std::string& bytes,
                     int rank, int attempt, std::optional<size_t> declared_bytes) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);  // a hostile client sends whatever it likes
  grpc::GenericStub generic(control_channel(endpoint.address, endpoint.cert_sha256, args));
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline_in(kControlCallDeadline));
  identify(ctx, endpoint.token, declared_bytes, rank, attempt);
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1), response;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status result;
  generic.UnaryCall(&ctx, "/rondo.control.Control/" + method, grpc::StubOptions(), &request, &response,
                    [&](grpc::Status s) {
                      std::lock_guard lock(mu);
                      result = std::move(s);
                      done = true;
                      cv.notify_all();
                    });
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return done; });
  return static_cast<int>(result.error_code());
}

}  // namespace rondo

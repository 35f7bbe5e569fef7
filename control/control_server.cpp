#include "control/control_server.h"

#include <unistd.h>

#include <string_view>

#include <grpcpp/grpcpp.h>

#include "common/errors.h"
#include "common/logging.h"
#include "control/job_state.h"
#include "proto/control.grpc.pb.h"

namespace rondo {

namespace {

using Refusal = JobState::Refusal;

// Compares a presented token with the job's in time that depends on the length only (which is
// no secret), so that how long a refusal takes tells nothing about how much of a guess was right.
bool same_secret(std::string_view presented, std::string_view secret) {
  if (presented.size() != secret.size() || secret.empty()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < secret.size(); ++i) diff |= static_cast<unsigned char>(presented[i] ^ secret[i]);
  return diff == 0;
}

// Every method takes raw bytes, so that a request too large or unparseable reaches us (and is
// counted) instead of being dropped inside gRPC.
using RawService = control::Control::WithRawCallbackMethod_Register<
    control::Control::WithRawCallbackMethod_Heartbeat<control::Control::WithRawCallbackMethod_Report<
        control::Control::WithRawCallbackMethod_Status<control::Control::WithRawCallbackMethod_Flight<
            control::Control::WithRawCallbackMethod_Operate<control::Control::Service>>>>>>;

// Requests larger than this never reach a handler; between the configured limit and this one
// they are read and refused as oversized.
constexpr int kTransportLimitBytes = 64 << 20;

class Service final : public RawService {
 public:
  Service(JobState& state, const ControlServerOptions& options)
      : state_(state), options_(options), log_(logging::get("control")) {}

  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                     grpc::ByteBuffer* out) override {
    control::RegisterRequest req;
    if (auto s = accept(ctx, in, &req, "Register"); !s.ok()) return finish(ctx, s);
    if (auto s = admit(ctx, req.rank(), req.attempt(), "Register"); !s.ok()) return finish(ctx, s);
    state_.registered(req);
    const int registered = state_.registered_count();
    if (registered == state_.world_size()) log_->info("all {} ranks registered", registered);
    // One line per rank is for debugging: at 10k ranks it would bury everything else.
    log_->debug("rank {} registered: pid {} on {}, rondo {}, plan v{}, torch {}, {}", req.rank(), req.pid(),
                req.host(), req.rondo_version(), req.plan_version(), req.torch_version(), req.mpi_version());
    control::RegisterReply reply;
    reply.set_world_size(static_cast<uint32_t>(state_.world_size()));
    reply.set_heartbeat_interval_s(options_.heartbeat_interval_s);
    return reply_with(ctx, reply, out);
  }

  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                      grpc::ByteBuffer* out) override {
    control::HeartbeatRequest req;
    if (auto s = accept(ctx, in, &req, "Heartbeat"); !s.ok()) return finish(ctx, s);
    if (auto s = admit(ctx, req.rank(), req.attempt(), "Heartbeat"); !s.ok()) return finish(ctx, s);
    control::HeartbeatReply reply;
    for (auto& c : state_.heartbeat(req)) *reply.add_commands() = std::move(c);
    return reply_with(ctx, reply, out);
  }

  grpc::ServerUnaryReactor* Report(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                   grpc::ByteBuffer* out) override {
    control::ReportRequest req;
    if (auto s = accept(ctx, in, &req, "Report"); !s.ok()) return finish(ctx, s);
    if (auto s = admit(ctx, req.rank(), req.attempt(), "Report"); !s.ok()) return finish(ctx, s);
    for (auto& r : *req.mutable_reports()) {
      r.set_rank(req.rank());  // a rank speaks for itself only
      state_.add_report(r);
    }
    return reply_with(ctx, control::Ack(), out);
  }

  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                   grpc::ByteBuffer* out) override {
    control::StatusRequest req;
    if (auto s = accept(ctx, in, &req, "Status"); !s.ok()) return finish(ctx, s);
    const auto& st = req.status();
    if (auto s = admit(ctx, st.rank(), st.attempt(), "Status"); !s.ok()) return finish(ctx, s);
    state_.set_status(st);
    if (st.state() == report::FAILED) log_->warn("rank {} failed: {}", st.rank(), st.error());
    return reply_with(ctx, control::Ack(), out);
  }

  grpc::ServerUnaryReactor* Flight(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                   grpc::ByteBuffer* out) override {
    control::FlightRequest req;
    if (auto s = accept(ctx, in, &req, "Flight"); !s.ok()) return finish(ctx, s);
    if (auto s = admit(ctx, req.dump().rank(), req.dump().attempt(), "Flight"); !s.ok())
      return finish(ctx, s);
    state_.add_flight(req.dump());
    return reply_with(ctx, control::Ack(), out);
  }

  grpc::ServerUnaryReactor* Operate(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                    grpc::ByteBuffer* out) override {
    control::CommandRequest req;
    if (auto s = accept(ctx, in, &req, "Operate"); !s.ok()) return finish(ctx, s);
    if (req.kind() != control::Command::CHECKPOINT_NOW && req.kind() != control::Command::STOP) {
      return finish(ctx, refuse(ctx, Refusal::kMalformed, "Operate", grpc::StatusCode::INVALID_ARGUMENT,
                                "an operator may ask for CHECKPOINT_NOW or STOP only"));
    }
    log_->info("operator at {} asks for {}{}", ctx->peer(), control::Command::Kind_Name(req.kind()),
               req.reason().empty() ? "" : ": " + req.reason());
    // Rank 0 alone: the step's world-wide maxima carry it to every rank at one step. Sent to every
    // rank, it would arrive at different steps and be taken twice.
    state_.command(req.kind(), 0);
    state_.add_event({{"event", "operator_command"},
                      {"command", control::Command::Kind_Name(req.kind())},
                      {"reason", req.reason()}});
    return reply_with(ctx, control::Ack(), out);
  }

 private:
  grpc::Status refuse(grpc::CallbackServerContext* ctx, Refusal why, const char* method,
                      grpc::StatusCode code, const std::string& message) {
    state_.refuse(why);
    log_->warn("refused {} from {}: {} ({})", method, ctx->peer(), message, JobState::refusal_name(why));
    return grpc::Status(code, message);
  }

  // Token, size, then parse.
  grpc::Status accept(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                      google::protobuf::Message* message, const char* method) {
    const auto& md = ctx->client_metadata();
    const auto it = md.find("rondo-token");
    if (it == md.end() ||
        !same_secret(std::string_view(it->second.data(), it->second.size()), options_.token)) {
      return refuse(ctx, Refusal::kToken, method, grpc::StatusCode::UNAUTHENTICATED,
                    "missing or wrong rondo-token");
    }
    if (in->Length() > options_.max_message_bytes) {
      return refuse(ctx, Refusal::kOversized, method, grpc::StatusCode::RESOURCE_EXHAUSTED,
                    "request of " + std::to_string(in->Length()) + " bytes exceeds the limit of " +
                        std::to_string(options_.max_message_bytes));
    }
    grpc::Slice slice;
    if (!in->DumpToSingleSlice(&slice).ok() ||
        !message->ParseFromArray(slice.begin(), static_cast<int>(slice.size()))) {
      return refuse(ctx, Refusal::kMalformed, method, grpc::StatusCode::INVALID_ARGUMENT,
                    "request does not parse as " + message->GetTypeName());
    }
    return grpc::Status::OK;
  }

  grpc::Status admit(grpc::CallbackServerContext* ctx, int rank, int attempt, const char* method) {
    if (const auto why = state_.admit(rank, attempt)) {
      return refuse(ctx, *why, method, grpc::StatusCode::PERMISSION_DENIED,
                    "rank " + std::to_string(rank) + " attempt " + std::to_string(attempt) +
                        " is not part of this job's current attempt " + std::to_string(state_.attempt()) +
                        " of " + std::to_string(state_.world_size()) + " ranks");
    }
    return grpc::Status::OK;
  }

  static grpc::ServerUnaryReactor* finish(grpc::CallbackServerContext* ctx, const grpc::Status& status) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(status);
    return reactor;
  }

  static grpc::ServerUnaryReactor* reply_with(grpc::CallbackServerContext* ctx,
                                              const google::protobuf::Message& reply, grpc::ByteBuffer* out) {
    const std::string bytes = reply.SerializeAsString();
    grpc::Slice slice(bytes);
    *out = grpc::ByteBuffer(&slice, 1);
    return finish(ctx, grpc::Status::OK);
  }

  JobState& state_;
  const ControlServerOptions options_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace

struct ControlServer::Impl {
  std::unique_ptr<Service> service;
  std::unique_ptr<grpc::Server> server;
  std::string host;
  int port = 0;
};

ControlServer::ControlServer(JobState& state, ControlServerOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->service = std::make_unique<Service>(state, options);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.bind_address, grpc::InsecureServerCredentials(), &impl_->port);
  builder.SetMaxReceiveMessageSize(kTransportLimitBytes);
  builder.RegisterService(impl_->service.get());
  impl_->server = builder.BuildAndStart();
  if (!impl_->server || impl_->port == 0) {
    throw Error("cannot serve the control plane on " + options.bind_address +
                " (launch.control_address): the address is in use or not local");
  }
  const auto colon = options.bind_address.rfind(':');
  impl_->host = options.bind_address.substr(0, colon);
  if (impl_->host.empty() || impl_->host == "0.0.0.0" || impl_->host == "[::]") {
    // Listening on every interface: other nodes dial this host by name.
    char name[256] = {};
    ::gethostname(name, sizeof(name) - 1);
    impl_->host = name;
  }
}

ControlServer::~ControlServer() {
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  impl_->server->Wait();
}

int ControlServer::port() const { return impl_->port; }

std::string ControlServer::address() const { return impl_->host + ":" + std::to_string(impl_->port); }

}  // namespace rondo

#include "control/control_server.h"

#include <unistd.h>

#include <charconv>
#include <optional>
#include <string_view>

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/auth_metadata_processor.h>

#include "common/errors.h"
#include "common/logging.h"
#include "control/control_metadata.h"
#include "control/job_certificate.h"
#include "control/job_state.h"
#include "proto/control.grpc.pb.h"

namespace rondo {

namespace {

using Refusal = JobState::Refusal;
using Metadata = std::multimap<grpc::string_ref, grpc::string_ref>;

// What a call's body may send before its metadata is admitted: one small window, not the megabytes
// that probing the bandwidth would grant. A handler's read asks for the whole message anyway.
constexpr int kUnreadWindowBytes = 64 << 10;

// Compares a presented token with the job's in time that depends on the length only (which is
// no secret), so that how long a refusal takes tells nothing about how much of a guess was right.
bool same_secret(std::string_view presented, std::string_view secret) {
  if (presented.size() != secret.size() || secret.empty()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < secret.size(); ++i) diff |= static_cast<unsigned char>(presented[i] ^ secret[i]);
  return diff == 0;
}

std::optional<std::string_view> find(const Metadata& md, const char* key) {
  const auto it = md.find(key);
  if (it == md.end()) return std::nullopt;
  return std::string_view(it->second.data(), it->second.size());
}

// A non-negative number under 2^31, or nullopt.
std::optional<int64_t> number(std::optional<std::string_view> text) {
  if (!text) return std::nullopt;
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || end != text->data() + text->size() || value < 0 || value >= (int64_t{1} << 31))
    return std::nullopt;
  return value;
}

// What a call's metadata says of it (control/control_metadata.h).
struct Caller {
  std::optional<int64_t> rank, attempt, length;  // nullopt: absent, or not a number
};

Caller caller_of(const Metadata& md) {
  Caller c;
  const auto rank = find(md, kRankMetadata), attempt = find(md, kAttemptMetadata),
             length = find(md, kLengthMetadata);
  c.rank = number(rank);
  c.attempt = number(attempt);
  c.length = number(length);
  return c;
}

// Screens every call on its metadata, inside gRPC's authorisation filter: before the server asks
// for the body, so a refused call's body never crosses beyond one flow-control window. The token,
// the method, the body's declared length, and (but for an operator's Operate) rank and attempt.
class MetadataGate final : public grpc::AuthMetadataProcessor {
 public:
  MetadataGate(JobState& state, const ControlServerOptions& options)
      : state_(state), options_(options), log_(logging::get("control")) {}

  bool IsBlocking() const override { return false; }  // answered at once, on gRPC's thread

  grpc::Status Process(const InputMetadata& md, grpc::AuthContext*, OutputMetadata*,
                       OutputMetadata*) override {
    const std::string_view path = find(md, ":path").value_or("");
    const auto refuse = [&](Refusal why, grpc::StatusCode code, const std::string& message) {
      state_.refuse(why);
      log_->warn("refused {} on its metadata: {} ({})", path, message, JobState::refusal_name(why));
      return grpc::Status(code, message);
    };
    const auto token = find(md, kTokenMetadata);
    if (!token || !same_secret(*token, options_.token))
      return refuse(Refusal::kToken, grpc::StatusCode::UNAUTHENTICATED,
                    std::string("missing or wrong ") + kTokenMetadata);
    constexpr std::string_view kService = "/rondo.control.Control/";
    const std::string_view method =
        path.substr(0, kService.size()) == kService ? path.substr(kService.size()) : "";
    const bool from_an_operator = method == "Operate";
    if (!from_an_operator && method != "Register" && method != "Heartbeat" && method != "Report" &&
        method != "Status" && method != "Flight") {
      return refuse(Refusal::kMalformed, grpc::StatusCode::UNIMPLEMENTED,
                    "no such method of the control plane");
    }
    const Caller c = caller_of(md);
    if (!c.length) {
      return refuse(Refusal::kMalformed, grpc::StatusCode::INVALID_ARGUMENT,
                    std::string("no request length in ") + kLengthMetadata);
    }
    if (!from_an_operator) {
      if (!c.rank || !c.attempt) {
        return refuse(Refusal::kMalformed, grpc::StatusCode::INVALID_ARGUMENT,
                      std::string("a rank's call needs its rank and attempt in ") + kRankMetadata + " and " +
                          kAttemptMetadata);
      }
      const int rank = static_cast<int>(*c.rank), attempt = static_cast<int>(*c.attempt);
      if (const auto why = state_.admit(rank, attempt)) {
        return refuse(*why, grpc::StatusCode::PERMISSION_DENIED,
                      "rank " + std::to_string(rank) + " attempt " + std::to_string(attempt) +
                          " is not part of this job's current attempt " + std::to_string(state_.attempt()) +
                          " of " + std::to_string(state_.world_size()) + " ranks");
      }
    }
    if (static_cast<uint64_t>(*c.length) > options_.max_message_bytes) {
      return refuse(Refusal::kOversized, grpc::StatusCode::RESOURCE_EXHAUSTED,
                    "request of " + std::to_string(*c.length) + " bytes exceeds the limit of " +
                        std::to_string(options_.max_message_bytes));
    }
    return grpc::Status::OK;
  }

 private:
  JobState& state_;
  const ControlServerOptions options_;
  std::shared_ptr<spdlog::logger> log_;
};

// Every method takes raw bytes, so that a request that does not parse reaches us (and is counted)
// instead of being dropped inside gRPC.
using RawService = control::Control::WithRawCallbackMethod_Register<
    control::Control::WithRawCallbackMethod_Heartbeat<control::Control::WithRawCallbackMethod_Report<
        control::Control::WithRawCallbackMethod_Status<control::Control::WithRawCallbackMethod_Flight<
            control::Control::WithRawCallbackMethod_Operate<control::Control::Service>>>>>>;

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
    control::HeartbeatRequest beat;  // a report is a heartbeat too
    beat.set_rank(req.rank());
    beat.set_attempt(req.attempt());
    beat.set_state(req.state());
    for (auto& r : *req.mutable_reports()) {
      r.set_rank(req.rank());  // a rank speaks for itself only
      state_.add_report(r);
      beat.set_step(std::max(beat.step(), r.step()));
    }
    control::HeartbeatReply reply;
    for (auto& c : state_.heartbeat(beat)) *reply.add_commands() = std::move(c);
    return reply_with(ctx, reply, out);
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

  // The gate admitted the metadata; the body must be as long as declared, and parse.
  grpc::Status accept(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                      google::protobuf::Message* message, const char* method) {
    const Caller c = caller_of(ctx->client_metadata());
    if (!c.length || static_cast<size_t>(*c.length) != in->Length()) {
      return refuse(ctx, Refusal::kMalformed, method, grpc::StatusCode::INVALID_ARGUMENT,
                    "the request has " + std::to_string(in->Length()) + " bytes, not the " + kLengthMetadata +
                        " its metadata declares");
    }
    grpc::Slice slice;
    if (!in->DumpToSingleSlice(&slice).ok() ||
        !message->ParseFromArray(slice.begin(), static_cast<int>(slice.size()))) {
      return refuse(ctx, Refusal::kMalformed, method, grpc::StatusCode::INVALID_ARGUMENT,
                    "request does not parse as " + message->GetTypeName());
    }
    return grpc::Status::OK;
  }

  // A rank's call speaks for the rank and attempt its metadata named (which the gate admitted).
  // Admitted again here: the job may have moved on to another attempt, or fewer ranks, while the
  // body was on its way.
  grpc::Status admit(grpc::CallbackServerContext* ctx, int rank, int attempt, const char* method) {
    const Caller c = caller_of(ctx->client_metadata());
    if (c.rank && c.attempt && *c.rank == rank && *c.attempt == attempt) {
      const auto why = state_.admit(rank, attempt);
      if (!why) return grpc::Status::OK;
      return refuse(ctx, *why, method, grpc::StatusCode::PERMISSION_DENIED,
                    "rank " + std::to_string(rank) + " attempt " + std::to_string(attempt) +
                        " is no longer part of this job's current attempt " +
                        std::to_string(state_.attempt()) + " of " + std::to_string(state_.world_size()) +
                        " ranks");
    }
    return refuse(
        ctx, Refusal::kMalformed, method, grpc::StatusCode::INVALID_ARGUMENT,
        "the request is rank " + std::to_string(rank) + " attempt " + std::to_string(attempt) +
            ", its metadata " +
            (c.rank ? "rank " + std::to_string(*c.rank) + " attempt " + std::to_string(c.attempt.value_or(-1))
                    : std::string("names no rank")));
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

// The host part of a bind address; on every interface, this host's name (other nodes dial it).
std::string bind_host_name(const std::string& bind_address) {
  std::string host = bind_address.substr(0, bind_address.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "[::]") {
    char name[256] = {};
    ::gethostname(name, sizeof(name) - 1);
    host = name;
  }
  return host;
}

}  // namespace

struct ControlServer::Impl {
  std::unique_ptr<Service> service;
  std::unique_ptr<grpc::Server> server;
  std::string host;
  int port = 0;
  std::string cert_pem, cert_sha256;
};

ControlServer::ControlServer(JobState& state, ControlServerOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->service = std::make_unique<Service>(state, options);
  grpc::ServerBuilder builder;
  // Loopback only, or TLS: both are credentials that run the gate on every call's metadata.
  std::shared_ptr<grpc::ServerCredentials> credentials =
      grpc::experimental::LocalServerCredentials(LOCAL_TCP);
  if (options.tls) {
    const JobCertificate identity = make_job_certificate(bind_host_name(options.bind_address));
    grpc::SslServerCredentialsOptions tls;
    tls.pem_key_cert_pairs.push_back({identity.key_pem, identity.cert_pem});
    credentials = grpc::SslServerCredentials(tls);
    impl_->cert_pem = identity.cert_pem;
    impl_->cert_sha256 = identity.sha256;
  }
  credentials->SetAuthMetadataProcessor(std::make_shared<MetadataGate>(state, options));
  builder.AddListeningPort(options.bind_address, credentials, &impl_->port);
  // A body longer than its metadata declared and over the limit: refused by the transport.
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, kUnreadWindowBytes);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  builder.RegisterService(impl_->service.get());
  impl_->server = builder.BuildAndStart();
  if (!impl_->server || impl_->port == 0) {
    throw Error("cannot serve the control plane on " + options.bind_address +
                " (launch.control_address): the address is in use or not local");
  }
  impl_->host = bind_host_name(options.bind_address);
}

ControlServer::~ControlServer() {
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  impl_->server->Wait();
}

int ControlServer::port() const { return impl_->port; }

std::string ControlServer::address() const { return impl_->host + ":" + std::to_string(impl_->port); }

const std::string& ControlServer::cert_pem() const { return impl_->cert_pem; }

const std::string& ControlServer::cert_sha256() const { return impl_->cert_sha256; }

}  // namespace rondo

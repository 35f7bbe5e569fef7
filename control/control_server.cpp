#include "control/control_server.h"

#include <unistd.h>

#include <charconv>
#include <optional>
#include <string_view>

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include "common/errors.h"
#include "common/logging.h"
#include "control/control_metadata.h"
#include "control/job_certificate.h"
#include "control/job_state.h"
#include "proto/control.pb.h"

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

std::optional<std::string_view> metadata(const grpc::GenericCallbackServerContext* ctx, const char* key) {
  const auto& md = ctx->client_metadata();
  const auto it = md.find(key);
  if (it == md.end()) return std::nullopt;
  return std::string_view(it->second.data(), it->second.size());
}

std::optional<int64_t> metadata_number(const grpc::GenericCallbackServerContext* ctx, const char* key) {
  const auto text = metadata(ctx, key);
  if (!text) return std::nullopt;
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || end != text->data() + text->size()) return std::nullopt;
  return value;
}

// A call that passed its metadata: who it says it is, and how long it says its body is.
struct Caller {
  int rank = -1;  // -1: an operator (Operate)
  int attempt = -1;
  std::optional<int64_t> length;
};

// What a call's body may send before the service has read its metadata and asked for it.
constexpr int kUnreadWindowBytes = 64 << 10;

class Service;
using Handler = grpc::Status (Service::*)(grpc::GenericCallbackServerContext*, const Caller&,
                                          std::string_view request, std::string* reply);

// A method of proto/control.proto: whether its caller is a rank of the job (named in the
// metadata, so that it is admitted before the body is read), and what it does.
struct Method {
  std::string_view name;
  bool from_a_rank;
  Handler handle;
};

// The one call a reactor serves: its metadata screened before anything of its body is read,
// then one request read (the transport bounds its size), handled, and answered.
class Call final : public grpc::ServerGenericBidiReactor {
 public:
  Call(Service& service, grpc::GenericCallbackServerContext* ctx);
  void OnReadDone(bool ok) override;
  void OnDone() override { delete this; }

 private:
  Service& service_;
  grpc::GenericCallbackServerContext* ctx_;
  const Method* method_ = nullptr;
  Caller caller_;
  grpc::ByteBuffer request_, reply_;
};

class Service final : public grpc::CallbackGenericService {
 public:
  Service(JobState& state, const ControlServerOptions& options)
      : state_(state), options_(options), log_(logging::get("control")) {}

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    return new Call(*this, ctx);
  }

  // Method, token, (for a rank's call) rank and attempt, then the body's declared length: all from
  // the metadata.
  grpc::Status screen(grpc::GenericCallbackServerContext* ctx, const Method** method, Caller* caller) {
    const std::string& path = ctx->method();
    *method = find(path);
    if (*method == nullptr) {
      return refuse(ctx, Refusal::kMalformed, path, grpc::StatusCode::UNIMPLEMENTED,
                    "no such method of the control plane");
    }
    const auto token = metadata(ctx, kTokenMetadata);
    if (!token || !same_secret(*token, options_.token)) {
      return refuse(ctx, Refusal::kToken, path, grpc::StatusCode::UNAUTHENTICATED,
                    std::string("missing or wrong ") + kTokenMetadata);
    }
    if ((*method)->from_a_rank) {
      if (auto s = admit(ctx, caller); !s.ok()) return s;
    }
    if (!metadata(ctx, kLengthMetadata)) return grpc::Status::OK;
    caller->length = metadata_number(ctx, kLengthMetadata);
    if (!caller->length || *caller->length < 0) {
      return refuse(ctx, Refusal::kMalformed, path, grpc::StatusCode::INVALID_ARGUMENT,
                    std::string(kLengthMetadata) + " is not a length");
    }
    if (static_cast<uint64_t>(*caller->length) > options_.max_message_bytes) return oversized(ctx, *caller->length);
    return grpc::Status::OK;
  }

  // A rank's call: its rank and attempt, from the metadata, must be the job's.
  grpc::Status admit(grpc::GenericCallbackServerContext* ctx, Caller* caller) {
    const std::string& path = ctx->method();
    const auto rank = metadata_number(ctx, kRankMetadata), attempt = metadata_number(ctx, kAttemptMetadata);
    if (!rank || !attempt || *rank < 0 || *rank > (1 << 30) || *attempt < 0 || *attempt > (1 << 30)) {
      return refuse(ctx, Refusal::kMalformed, path, grpc::StatusCode::INVALID_ARGUMENT,
                    std::string("a rank's call needs its rank and attempt in ") + kRankMetadata + " and " +
                        kAttemptMetadata);
    }
    caller->rank = static_cast<int>(*rank);
    caller->attempt = static_cast<int>(*attempt);
    if (const auto why = state_.admit(caller->rank, caller->attempt)) {
      return refuse(ctx, *why, path, grpc::StatusCode::PERMISSION_DENIED,
                    "rank " + std::to_string(caller->rank) + " attempt " + std::to_string(caller->attempt) +
                        " is not part of this job's current attempt " + std::to_string(state_.attempt()) +
                        " of " + std::to_string(state_.world_size()) + " ranks");
    }
    return grpc::Status::OK;
  }

  // A body that could not be read: larger than the transport takes, or none before the end.
  grpc::Status unread(grpc::GenericCallbackServerContext* ctx) {
    return refuse(ctx, Refusal::kOversized, ctx->method(), grpc::StatusCode::RESOURCE_EXHAUSTED,
                  "no request of at most " + std::to_string(options_.max_message_bytes) +
                      " bytes was received");
  }

  grpc::Status oversized(grpc::GenericCallbackServerContext* ctx, int64_t bytes) {
    return refuse(ctx, Refusal::kOversized, ctx->method(), grpc::StatusCode::RESOURCE_EXHAUSTED,
                  "request of " + std::to_string(bytes) + " bytes exceeds the limit of " +
                      std::to_string(options_.max_message_bytes));
  }

  grpc::Status handle(grpc::GenericCallbackServerContext* ctx, const Method& method, const Caller& caller,
                      const grpc::ByteBuffer& in, std::string* reply) {
    grpc::Slice slice;
    if (in.Length() > options_.max_message_bytes) return oversized(ctx, static_cast<int64_t>(in.Length()));
    if (caller.length && static_cast<size_t>(*caller.length) != in.Length()) {
      return refuse(ctx, Refusal::kMalformed, ctx->method(), grpc::StatusCode::INVALID_ARGUMENT,
                    "the request has " + std::to_string(in.Length()) + " bytes, its " + kLengthMetadata + " " +
                        std::to_string(*caller.length));
    }
    if (in.Length() > 0 && !in.DumpToSingleSlice(&slice).ok()) {
      return refuse(ctx, Refusal::kMalformed, ctx->method(), grpc::StatusCode::INVALID_ARGUMENT,
                    "the request could not be read");
    }
    const std::string_view bytes(reinterpret_cast<const char*>(slice.begin()), slice.size());
    return (this->*method.handle)(ctx, caller, bytes, reply);
  }

 private:
  static const Method* find(std::string_view path) {
    static constexpr std::string_view kPrefix = "/rondo.control.Control/";
    static const Method kMethods[] = {
        {"Register", true, &Service::Register}, {"Heartbeat", true, &Service::Heartbeat},
        {"Report", true, &Service::Report},     {"Status", true, &Service::Status},
        {"Flight", true, &Service::Flight},     {"Operate", false, &Service::Operate},
    };
    if (path.substr(0, kPrefix.size()) != kPrefix) return nullptr;
    path.remove_prefix(kPrefix.size());
    for (const auto& m : kMethods)
      if (m.name == path) return &m;
    return nullptr;
  }

  grpc::Status Register(grpc::GenericCallbackServerContext* ctx, const Caller& caller, std::string_view in,
                        std::string* out) {
    control::RegisterRequest req;
    if (auto s = parse(ctx, in, &req); !s.ok()) return s;
    if (auto s = same_caller(ctx, caller, req.rank(), req.attempt()); !s.ok()) return s;
    state_.registered(req);
    const int registered = state_.registered_count();
    if (registered == state_.world_size()) log_->info("all {} ranks registered", registered);
    // One line per rank is for debugging: at 10k ranks it would bury everything else.
    log_->debug("rank {} registered: pid {} on {}, rondo {}, plan v{}, torch {}, {}", req.rank(), req.pid(),
                req.host(), req.rondo_version(), req.plan_version(), req.torch_version(), req.mpi_version());
    control::RegisterReply reply;
    reply.set_world_size(static_cast<uint32_t>(state_.world_size()));
    reply.set_heartbeat_interval_s(options_.heartbeat_interval_s);
    *out = reply.SerializeAsString();
    return grpc::Status::OK;
  }

  grpc::Status Heartbeat(grpc::GenericCallbackServerContext* ctx, const Caller& caller, std::string_view in,
                         std::string* out) {
    control::HeartbeatRequest req;
    if (auto s = parse(ctx, in, &req); !s.ok()) return s;
    if (auto s = same_caller(ctx, caller, req.rank(), req.attempt()); !s.ok()) return s;
    control::HeartbeatReply reply;
    for (auto& c : state_.heartbeat(req)) *reply.add_commands() = std::move(c);
    *out = reply.SerializeAsString();
    return grpc::Status::OK;
  }

  grpc::Status Report(grpc::GenericCallbackServerContext* ctx, const Caller& caller, std::string_view in,
                      std::string* out) {
    control::ReportRequest req;
    if (auto s = parse(ctx, in, &req); !s.ok()) return s;
    if (auto s = same_caller(ctx, caller, req.rank(), req.attempt()); !s.ok()) return s;
    for (auto& r : *req.mutable_reports()) {
      r.set_rank(req.rank());  // a rank speaks for itself only
      state_.add_report(r);
    }
    *out = control::Ack().SerializeAsString();
    return grpc::Status::OK;
  }

  grpc::Status Status(grpc::GenericCallbackServerContext* ctx, const Caller& caller, std::string_view in,
                      std::string* out) {
    control::StatusRequest req;
    if (auto s = parse(ctx, in, &req); !s.ok()) return s;
    const auto& st = req.status();
    if (auto s = same_caller(ctx, caller, st.rank(), st.attempt()); !s.ok()) return s;
    state_.set_status(st);
    if (st.state() == report::FAILED) log_->warn("rank {} failed: {}", st.rank(), st.error());
    *out = control::Ack().SerializeAsString();
    return grpc::Status::OK;
  }

  grpc::Status Flight(grpc::GenericCallbackServerContext* ctx, const Caller& caller, std::string_view in,
                      std::string* out) {
    control::FlightRequest req;
    if (auto s = parse(ctx, in, &req); !s.ok()) return s;
    if (auto s = same_caller(ctx, caller, req.dump().rank(), req.dump().attempt()); !s.ok()) return s;
    state_.add_flight(req.dump());
    *out = control::Ack().SerializeAsString();
    return grpc::Status::OK;
  }

  grpc::Status Operate(grpc::GenericCallbackServerContext* ctx, const Caller&, std::string_view in,
                       std::string* out) {
    control::CommandRequest req;
    if (auto s = parse(ctx, in, &req); !s.ok()) return s;
    if (req.kind() != control::Command::CHECKPOINT_NOW && req.kind() != control::Command::STOP) {
      return refuse(ctx, Refusal::kMalformed, ctx->method(), grpc::StatusCode::INVALID_ARGUMENT,
                    "an operator may ask for CHECKPOINT_NOW or STOP only");
    }
    log_->info("operator at {} asks for {}{}", ctx->peer(), control::Command::Kind_Name(req.kind()),
               req.reason().empty() ? "" : ": " + req.reason());
    // Rank 0 alone: the step's world-wide maxima carry it to every rank at one step. Sent to every
    // rank, it would arrive at different steps and be taken twice.
    state_.command(req.kind(), 0);
    state_.add_event({{"event", "operator_command"},
                      {"command", control::Command::Kind_Name(req.kind())},
                      {"reason", req.reason()}});
    *out = control::Ack().SerializeAsString();
    return grpc::Status::OK;
  }

  grpc::Status refuse(grpc::GenericCallbackServerContext* ctx, Refusal why, std::string_view method,
                      grpc::StatusCode code, const std::string& message) {
    state_.refuse(why);
    log_->warn("refused {} from {}: {} ({})", method, ctx->peer(), message, JobState::refusal_name(why));
    return grpc::Status(code, message);
  }

  grpc::Status parse(grpc::GenericCallbackServerContext* ctx, std::string_view in,
                     google::protobuf::Message* message) {
    if (!message->ParseFromArray(in.data(), static_cast<int>(in.size()))) {
      return refuse(ctx, Refusal::kMalformed, ctx->method(), grpc::StatusCode::INVALID_ARGUMENT,
                    "request does not parse as " + message->GetTypeName());
    }
    return grpc::Status::OK;
  }

  // The body speaks for the rank the metadata admitted, and for no other.
  grpc::Status same_caller(grpc::GenericCallbackServerContext* ctx, const Caller& caller, int rank,
                           int attempt) {
    if (rank == caller.rank && attempt == caller.attempt) return grpc::Status::OK;
    return refuse(ctx, Refusal::kMalformed, ctx->method(), grpc::StatusCode::INVALID_ARGUMENT,
                  "the request is rank " + std::to_string(rank) + " attempt " + std::to_string(attempt) +
                      ", its metadata rank " + std::to_string(caller.rank) + " attempt " +
                      std::to_string(caller.attempt));
  }

  JobState& state_;
  const ControlServerOptions options_;
  std::shared_ptr<spdlog::logger> log_;
};

Call::Call(Service& service, grpc::GenericCallbackServerContext* ctx) : service_(service), ctx_(ctx) {
  if (auto s = service_.screen(ctx_, &method_, &caller_); !s.ok()) {
    Finish(s);  // nothing of the body is read
    return;
  }
  StartRead(&request_);
}

void Call::OnReadDone(bool ok) {
  if (!ok) {
    Finish(service_.unread(ctx_));
    return;
  }
  std::string reply;
  const auto status = service_.handle(ctx_, *method_, caller_, request_, &reply);
  if (!status.ok()) {
    Finish(status);
    return;
  }
  grpc::Slice slice(reply);
  reply_ = grpc::ByteBuffer(&slice, 1);
  StartWriteAndFinish(&reply_, grpc::WriteOptions(), grpc::Status::OK);
}

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
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (options.tls) {
    const JobCertificate identity = make_job_certificate(bind_host_name(options.bind_address));
    grpc::SslServerCredentialsOptions tls;
    tls.pem_key_cert_pairs.push_back({identity.key_pem, identity.cert_pem});
    credentials = grpc::SslServerCredentials(tls);
    impl_->cert_pem = identity.cert_pem;
    impl_->cert_sha256 = identity.sha256;
  }
  builder.AddListeningPort(options.bind_address, credentials, &impl_->port);
  // The transport refuses a larger body: the service sees its read fail and counts it.
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  // What a client may send before the service asks for its body: one small window, not the
  // megabytes that probing the bandwidth would grant. A read asks for the whole message anyway.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, kUnreadWindowBytes);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  builder.RegisterCallbackGenericService(impl_->service.get());
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

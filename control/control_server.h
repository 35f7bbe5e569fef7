// ControlServer: the coordinator's end of the control plane (proto/control.proto, gRPC). Workers
// register, send heartbeats, step reports, statuses and flight dumps; heartbeat replies carry the
// coordinator's commands. Each call must carry the job's token (`rondo-token` metadata) and come
// from a rank and attempt of the job; a call that does not, or whose message is oversized or does
// not parse, is refused with an error status, logged and counted in JobState — the server stays up.
// Handlers run on gRPC's threads and only touch JobState.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace rondo {

class JobState;

struct ControlServerOptions {
  std::string bind_address = "127.0.0.1:0";  // port 0: any free port
  std::string token;                         // the job's secret
  size_t max_message_bytes = 4u << 20;       // larger requests are refused and counted
  double heartbeat_interval_s = 1.0;         // told to workers at registration
};

class ControlServer {
 public:
  // Starts serving; throws Error when the address cannot be bound.
  ControlServer(JobState& state, ControlServerOptions options);
  ~ControlServer();  // stops serving, cancelling calls in flight
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  int port() const;
  // host:port for workers to dial.
  std::string address() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rondo

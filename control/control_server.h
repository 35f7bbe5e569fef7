// ControlServer: the coordinator's end of the control plane (proto/control.proto, gRPC). Workers
// register, send step reports, heartbeats, statuses and flight dumps; report and heartbeat replies
// carry the coordinator's commands. Each call must carry the job's token, its body's length and,
// for a rank's call, a rank and attempt of the job in its metadata (control/control_metadata.h): a
// call that does not, or declares a length over the limit, is refused on its metadata, before its
// body is read. A body longer than declared is cut off by the transport; one that does not parse,
// or speaks for another rank than its metadata, is refused after reading. Every
// refusal gets an error status, a log line and a count in JobState — the server stays up. With
// `tls` it makes a certificate of its own (control/job_certificate.h) and serves TLS only; clients
// pin its fingerprint. Handlers run on gRPC's threads and only touch JobState.
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
  bool tls = false;                          // TLS with a certificate made for this server
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
  // With TLS, the certificate (PEM) and its SHA-256 fingerprint that clients pin; else empty.
  const std::string& cert_pem() const;
  const std::string& cert_sha256() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rondo

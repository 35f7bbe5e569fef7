// ControlClient: a worker's end of the control plane (proto/control.proto). The coordinator hands
// its address, the job's token, the attempt number and, when it listens beyond loopback, the
// SHA-256 fingerprint of its TLS certificate to workers in the environment (RONDO_CONTROL_ADDRESS,
// RONDO_JOB_TOKEN, RONDO_ATTEMPT, RONDO_CONTROL_CERT_SHA256). Every call carries the token, and a
// rank's call its rank and attempt, in its metadata (control/control_metadata.h).
//
// Call order: register_rank() once (retried until its deadline), then start(): a thread of its
// own sends the queued step reports, a heartbeat when no report went out for an interval, and
// passes the commands in the replies of both to the callback. queue_report() never blocks the step.
// send_status() and send_flight() are synchronous, each with a deadline, and report failure instead of
// throwing: a worker that cannot reach its coordinator still writes its files and exits.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "proto/control.pb.h"
#include "proto/report.pb.h"

namespace rondo {

inline constexpr std::chrono::duration<double> kControlCallDeadline{5.0};

// Where a client reaches the coordinator's control plane, and how it knows it is the job's.
struct ControlEndpoint {
  std::string address;      // host:port
  std::string token;        // the job's secret
  std::string cert_sha256;  // TLS, pinned to the certificate with this fingerprint; empty: plaintext
};

class ControlClient {
 public:
  // nullptr when RONDO_CONTROL_ADDRESS is not set (a worker started by hand).
  static std::unique_ptr<ControlClient> from_environment(int rank);

  ControlClient(ControlEndpoint endpoint, int rank, int attempt);
  ~ControlClient();  // stops the thread after sending what is queued (bounded by a deadline)
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  int rank() const { return rank_; }
  int attempt() const { return attempt_; }
  const std::string& address() const { return endpoint_.address; }

  // Throws Error naming the address when the coordinator does not accept it within `deadline`.
  void register_rank(control::RegisterRequest request, std::chrono::duration<double> deadline);
  void start(std::function<void(const control::Command&)> on_command);
  void set_step(int64_t step) { step_ = step; }
  void set_state(report::WorkerState state) { state_ = state; }
  void queue_report(report::StepReport report);
  bool send_status(report::WorkerStatus status);
  bool send_flight(report::FlightDump dump);

 private:
  void loop();
  // Sends what is queued; `delivered` when at least one call went through, `failed` when one did not.
  struct Flush {
    bool delivered = false, failed = false;
  };
  Flush flush_reports();
  void take_commands(const control::HeartbeatReply& reply);
  // One unary call of this rank answered by an Ack, with the standard deadline.
  template <class Call>
  bool acknowledged(const google::protobuf::Message& request, Call call);

  struct Connection;
  const ControlEndpoint endpoint_;
  const int rank_, attempt_;
  std::unique_ptr<Connection> connection_;
  std::function<void(const control::Command&)> on_command_;
  std::chrono::duration<double> heartbeat_interval_{1.0};
  std::atomic<int64_t> step_{0};
  std::atomic<int> state_{report::RUNNING};
  std::mutex mu_;
  std::condition_variable wake_;
  std::vector<report::StepReport> queued_;
  bool stopping_ = false;
  std::thread thread_;
};

// An operator's command to a running job (CHECKPOINT_NOW or STOP); throws Error naming the address
// when the coordinator refuses it or does not answer.
void send_operator_command(const ControlEndpoint& endpoint, control::Command::Kind kind,
                           const std::string& reason);

// One unary call of the control service (`method`, e.g. "Report") with raw bytes as its request, as
// a broken or hostile client would make it: the token (none when empty), when `rank` >= 0 rank and
// attempt, and the declared length if given, in the metadata. Returns the gRPC status code (0: OK).
// For tests and bench/control_load.
int raw_control_call(const ControlEndpoint& endpoint, const std::string& method, const std::string& bytes,
                     int rank = -1, int attempt = 0, std::optional<size_t> declared_bytes = std::nullopt);

}  // namespace rondo

// The control plane's defences, measured on the wire: calls refused on their metadata (token, rank,
// attempt, a declared length missing or over the limit) are refused before their bodies cross (a
// byte-counting TCP proxy between client and server says how much did), a body cannot speak for
// another rank than its metadata, and over TLS a client talks only to the server whose
// certificate it pinned.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "common/errors.h"
#include "control/control_client.h"
#include "control/control_server.h"
#include "control/job_certificate.h"
#include "control/job_state.h"

namespace rondo {
namespace {

using namespace std::chrono_literals;

uint64_t refused(const JobState& state, const char* reason) {
  return state.to_json()["refused_calls"].value(reason, uint64_t{0});
}

// Listens on a loopback port and forwards every connection to `target_port`, counting the bytes
// that reach the server per connection (one at a time: each raw call opens its own channel).
class ByteCountingProxy {
 public:
  explicit ByteCountingProxy(int target_port) : target_port_(target_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(listener_, 8) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw Error("byte-counting proxy: cannot listen on loopback");
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~ByteCountingProxy() {
    stop_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    thread_.join();
    ::close(listener_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // Bytes the next connection not yet asked about forwarded to the server, once it has closed.
  uint64_t next_connection_bytes() {
    std::unique_lock lock(mu_);
    if (!closed_.wait_for(lock, 10s, [&] { return per_connection_.size() > taken_; }))
      throw Error("byte-counting proxy: no connection closed within 10 s");
    return per_connection_[taken_++];
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const int client = ::accept(listener_, nullptr, nullptr);
      if (client < 0) continue;
      const int server = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(target_port_));
      const uint64_t forwarded =
          ::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 ? pump(client, server) : 0;
      ::close(server);
      ::close(client);
      std::lock_guard lock(mu_);
      per_connection_.push_back(forwarded);
      closed_.notify_all();
    }
  }

  // Both directions until either side closes; returns the bytes forwarded to the server.
  uint64_t pump(int client, int server) {
    char buf[1 << 16];
    uint64_t to_server = 0;
    while (!stop_) {
      pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      if (::poll(p, 2, 100) < 0) return to_server;
      for (int i = 0; i < 2; ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t n = ::read(p[i].fd, buf, sizeof(buf));
        if (n <= 0) return to_server;
        if (i == 0) to_server += static_cast<uint64_t>(n);
        for (ssize_t off = 0; off < n;) {
          const ssize_t w = ::write(p[1 - i].fd, buf + off, static_cast<size_t>(n - off));
          if (w <= 0) return to_server;
          off += w;
        }
      }
    }
    return to_server;
  }

  int target_port_, port_ = 0, listener_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable closed_;
  std::vector<uint64_t> per_connection_;
  size_t taken_ = 0;
  std::thread thread_;
};

struct ControlPlaneSecurity : ::testing::Test {
  JobState state{"/tmp/run", 2, 100};
  std::unique_ptr<ControlServer> server;
  void start(bool tls) {
    ControlServerOptions o;
    o.token = "secret";
    o.max_message_bytes = 64 << 10;
    o.tls = tls;
    server = std::make_unique<ControlServer>(state, o);
  }
};

TEST_F(ControlPlaneSecurity, CallsRefusedOnTheirMetadataAreRefusedBeforeTheirBodies) {
  start(false);
  ByteCountingProxy proxy(server->port());
  const ControlEndpoint job{proxy.address(), "secret", ""};
  control::ReportRequest big;
  big.set_rank(0);
  big.add_reports()->mutable_collectives()->Add()->set_op(std::string(16 << 20, 'x'));
  const std::string body = big.SerializeAsString();
  struct Case {
    const char* what;
    ControlEndpoint endpoint;
    int rank, attempt, status;
    const char* reason;
  };
  const Case cases[] = {
      {"wrong token", {job.address, "guess", ""}, 0, 0, grpc::StatusCode::UNAUTHENTICATED, "token"},
      {"no token", {job.address, "", ""}, 0, 0, grpc::StatusCode::UNAUTHENTICATED, "token"},
      {"rank outside the job", job, 5, 0, grpc::StatusCode::PERMISSION_DENIED, "unknown_rank"},
      {"stale attempt", job, 0, 2, grpc::StatusCode::PERMISSION_DENIED, "stale_attempt"},
      {"no rank in the metadata", job, -1, 0, grpc::StatusCode::INVALID_ARGUMENT, "malformed"},
      {"declared over the limit", job, 0, 0, grpc::StatusCode::RESOURCE_EXHAUSTED, "oversized"},
      {"no length declared", job, 0, 0, grpc::StatusCode::INVALID_ARGUMENT, "malformed"},
  };
  for (const auto& c : cases) {
    const uint64_t before = refused(state, c.reason);
    const bool declared = std::string_view(c.what) != "no length declared";
    EXPECT_EQ(raw_control_call(c.endpoint, "Report", body, c.rank, c.attempt,
                               declared ? std::optional<size_t>(body.size()) : std::nullopt),
              c.status)
        << c.what;
    const uint64_t crossed = proxy.next_connection_bytes();
    std::printf("%s: %llu bytes of a %zu-byte call reached the server\n", c.what,
                static_cast<unsigned long long>(crossed), body.size());
    // The body is 16 MiB: what crosses is the headers and at most a flow-control window.
    EXPECT_LT(crossed, 1u << 20) << c.what << ": " << crossed << " bytes reached the server";
    EXPECT_EQ(refused(state, c.reason), before + 1) << c.what;
  }
  // The job's token and rank, and a length that lies: gRPC's transport reads the body and refuses it
  // at the limit (not counted: the service never sees it). Only a holder of the token gets this far.
  EXPECT_EQ(raw_control_call(job, "Report", body, 0, 0, 100), grpc::StatusCode::RESOURCE_EXHAUSTED);
  const uint64_t crossed = proxy.next_connection_bytes();
  std::printf("a lying length, over the limit: %llu bytes of a %zu-byte call reached the server\n",
              static_cast<unsigned long long>(crossed), body.size());
  // Still serving the job's own ranks.
  ControlClient good(job, 1, 0);
  EXPECT_NO_THROW(good.register_rank({}, 5s));
  EXPECT_EQ(state.registered_count(), 1);
}

TEST_F(ControlPlaneSecurity, ABodySpeaksForTheRankItsMetadataNamesOnly) {
  start(false);
  const ControlEndpoint job{server->address(), "secret", ""};
  control::HeartbeatRequest beat;
  beat.set_rank(1);
  const std::string body = beat.SerializeAsString();
  EXPECT_EQ(raw_control_call(job, "Heartbeat", body, 0, 0, body.size()), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(raw_control_call(job, "Heartbeat", body, -1, 0, body.size()), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(refused(state, "malformed"), 2u);
  EXPECT_EQ(raw_control_call(job, "Heartbeat", body, 1, 0, body.size()), grpc::StatusCode::OK);
  // A body of another length than its metadata declares.
  EXPECT_EQ(raw_control_call(job, "Heartbeat", body, 1, 0, 1000), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(raw_control_call(job, "NoSuchMethod", "", 1, 0, 0), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(refused(state, "malformed"), 4u);
}

TEST_F(ControlPlaneSecurity, OverTlsClientsTalkToThePinnedCertificateOnly) {
  start(true);
  const std::string pin = server->cert_sha256();
  ASSERT_EQ(pin.size(), 64u);
  EXPECT_EQ(certificate_sha256(server->cert_pem()), pin);
  const ControlEndpoint job{server->address(), "secret", pin};
  ControlClient good(job, 0, 0);
  EXPECT_NO_THROW(good.register_rank({}, 5s));
  EXPECT_EQ(state.registered_count(), 1);
  send_operator_command(job, control::Command::CHECKPOINT_NOW, "over TLS");
  // Another job's certificate: this client never talks to this server (nor gives it the token).
  const std::string other = make_job_certificate("elsewhere").sha256;
  ASSERT_NE(other, pin);
  EXPECT_THROW(ControlClient({job.address, "secret", other}, 1, 0).register_rank({}, 2s), Error);
  // Plaintext to a TLS server gets nowhere either.
  EXPECT_EQ(raw_control_call({job.address, "secret", ""}, "Heartbeat", "", 1, 0, 0),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(state.registered_count(), 1);
}

TEST(JobCertificate, FingerprintsAndLoopback) {
  const auto a = make_job_certificate("node1"), b = make_job_certificate("node1");
  EXPECT_NE(a.sha256, b.sha256);  // a fresh key every time
  EXPECT_EQ(certificate_sha256(a.cert_pem), a.sha256);
  EXPECT_EQ(certificate_sha256("not a certificate"), "");
  EXPECT_NE(a.key_pem.find("PRIVATE KEY"), std::string::npos);
  for (const char* local : {"127.0.0.1:0", "127.3.2.1:5000", "localhost:7000", "[::1]:0"})
    EXPECT_TRUE(listens_on_loopback(local)) << local;
  for (const char* wide : {"0.0.0.0:0", "[::]:0", "10.0.0.2:5000", "node7:5000"})
    EXPECT_FALSE(listens_on_loopback(wide)) << wide;
}

}  // namespace
}  // namespace rondo

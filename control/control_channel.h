// The channel a control-plane client dials: gRPC's local credentials on loopback (plaintext, the
// peer checked to be local), or TLS pinned to the job's certificate (control/job_certificate.h)
// when the coordinator listens beyond it. For the control library and its tests and benches (it
// includes gRPC).
#pragma once

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

namespace rondo {

// `cert_sha256` empty: loopback, plaintext. Otherwise TLS that accepts exactly the certificate with this
// fingerprint (no chain, no host name: the fingerprint is the trust), and fails the handshake
// for any other.
std::shared_ptr<grpc::Channel> control_channel(const std::string& address, const std::string& cert_sha256,
                                               const grpc::ChannelArguments& args = {});

}  // namespace rondo

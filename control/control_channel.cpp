#include "control/control_channel.h"

#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "common/logging.h"
#include "control/job_certificate.h"

namespace rondo {

namespace {

// Accepts the peer whose leaf certificate has the pinned fingerprint; answers at once.
class PinnedCertificate final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit PinnedCertificate(std::string sha256) : sha256_(std::move(sha256)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)>, grpc::Status* sync_status) override {
    const auto pem = request->peer_cert();
    const std::string got = certificate_sha256(std::string_view(pem.data(), pem.size()));
    if (got == sha256_) {
      *sync_status = grpc::Status::OK;
    } else {
      const std::string why = "the coordinator's certificate (sha256 " + (got.empty() ? "unreadable" : got) +
                              ") is not the job's (RONDO_CONTROL_CERT_SHA256 " + sha256_ + ")";
      logging::get("control")->warn("{}", why);
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, why);
    }
    return true;  // synchronous
  }

  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  const std::string sha256_;
};

}  // namespace

std::shared_ptr<grpc::Channel> control_channel(const std::string& address, const std::string& cert_sha256,
                                               const grpc::ChannelArguments& args) {
  if (cert_sha256.empty()) {
    return grpc::CreateCustomChannel(address, grpc::experimental::LocalCredentials(LOCAL_TCP), args);
  }
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_verify_server_certs(false);  // no chain to a root: the pin below is the check
  options.set_check_call_host(false);
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<PinnedCertificate>(cert_sha256));
  return grpc::CreateCustomChannel(address, grpc::experimental::TlsCredentials(options), args);
}

}  // namespace rondo

// The control plane's TLS identity when it listens beyond loopback: a certificate made for one job
// (self-signed, ECDSA P-256, its key never written to disk), whose SHA-256 fingerprint the
// coordinator hands to its workers in their environment (RONDO_CONTROL_CERT_SHA256) so they
// pin it: a worker talks to the coordinator that holds this job's key, and to no other.
#pragma once

#include <string>
#include <string_view>

namespace rondo {

struct JobCertificate {
  std::string key_pem;   // PKCS#8, kept in memory only
  std::string cert_pem;  // what RUN_DIR/control.crt holds
  std::string sha256;    // lowercase hex of the SHA-256 of the certificate's DER
};

// A fresh key and a certificate for `host_name` (its subjectAltName), valid for 30 days from an hour
// ago. Throws Error when OpenSSL fails.
JobCertificate make_job_certificate(const std::string& host_name);

// The SHA-256 fingerprint of a PEM certificate (as `openssl x509 -fingerprint -sha256`, lowercase,
// without colons); empty when it does not parse.
std::string certificate_sha256(std::string_view cert_pem);

// Whether a bind address (host:port) listens on loopback only: 127.0.0.0/8, localhost or [::1].
bool listens_on_loopback(const std::string& bind_address);

}  // namespace rondo

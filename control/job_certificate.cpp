#include "control/job_certificate.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

#include "common/errors.h"

namespace rondo {

namespace {

template <class T, void (*Free)(T*)>
struct Freer {
  void operator()(T* p) const { Free(p); }
};
using Key = std::unique_ptr<EVP_PKEY, Freer<EVP_PKEY, EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Freer<X509, X509_free>>;
using Bio = std::unique_ptr<BIO, Freer<BIO, BIO_free_all>>;
using Extension = std::unique_ptr<X509_EXTENSION, Freer<X509_EXTENSION, X509_EXTENSION_free>>;
using Number = std::unique_ptr<BIGNUM, Freer<BIGNUM, BN_free>>;

void check(bool ok, const char* what) {
  if (!ok)
    throw Error(std::string("cannot make the control plane's TLS certificate: OpenSSL failed to ") + what);
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string fingerprint(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (X509_digest(cert, EVP_sha256(), md, &n) != 1) return "";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < n; ++i) {
    hex += kHex[md[i] >> 4];
    hex += kHex[md[i] & 15];
  }
  return hex;
}

void add_extension(X509* cert, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  Extension ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  check(ext && X509_add_ext(cert, ext.get(), -1) == 1, "add an extension");
}

}  // namespace

JobCertificate make_job_certificate(const std::string& host_name) {
  Key key(EVP_EC_gen("P-256"));
  check(key != nullptr, "generate a P-256 key");
  Cert cert(X509_new());
  check(cert != nullptr && X509_set_version(cert.get(), 2) == 1, "start a certificate");
  unsigned char serial[16];
  check(RAND_bytes(serial, sizeof(serial)) == 1, "draw a serial number");
  serial[0] &= 0x7f;  // positive
  const Number bn(BN_bin2bn(serial, sizeof(serial), nullptr));
  check(bn && BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())) != nullptr, "set the serial");
  check(X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr &&
            X509_gmtime_adj(X509_getm_notAfter(cert.get()), 30L * 24 * 3600) != nullptr,
        "set the validity");
  check(X509_set_pubkey(cert.get(), key.get()) == 1, "set the public key");
  X509_NAME* name = X509_get_subject_name(cert.get());
  const std::string common_name = "rondo control plane on " + host_name.substr(0, 40);
  check(
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0) == 1,
      "name the certificate");
  check(X509_set_issuer_name(cert.get(), name) == 1, "name the issuer");
  add_extension(cert.get(), NID_subject_alt_name, "DNS:" + host_name);
  add_extension(cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_extension(cert.get(), NID_ext_key_usage, "serverAuth");
  check(X509_sign(cert.get(), key.get(), EVP_sha256()) > 0, "sign the certificate");

  JobCertificate out;
  Bio key_bio(BIO_new(BIO_s_mem())), cert_bio(BIO_new(BIO_s_mem()));
  check(key_bio &&
            PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1,
        "write the key");
  check(cert_bio && PEM_write_bio_X509(cert_bio.get(), cert.get()) == 1, "write the certificate");
  out.key_pem = bio_text(key_bio.get());
  out.cert_pem = bio_text(cert_bio.get());
  out.sha256 = fingerprint(cert.get());
  check(!out.sha256.empty(), "fingerprint the certificate");
  return out;
}

std::string certificate_sha256(std::string_view cert_pem) {
  Bio bio(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
  if (!bio) return "";
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  return cert ? fingerprint(cert.get()) : "";
}

bool listens_on_loopback(const std::string& bind_address) {
  const auto colon = bind_address.rfind(':');
  const std::string host = bind_address.substr(0, colon == std::string::npos ? bind_address.size() : colon);
  return host == "localhost" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

}  // namespace rondo

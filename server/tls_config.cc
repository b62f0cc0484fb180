#include "server/tls_config.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace loopserve {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& field, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("server config: field `tls.", field, "`: cannot open ", path));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status PemError(const std::string& field, const std::string& path, const std::string& what) {
  ERR_clear_error();  // OpenSSL's queue would otherwise leak into later calls
  return absl::InvalidArgumentError(
      absl::StrCat("server config: field `tls.", field, "`: ", path, ": ", what));
}

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

std::unique_ptr<BIO, BioDeleter> MemoryBio(const std::string& pem) {
  return std::unique_ptr<BIO, BioDeleter>(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

std::unique_ptr<X509, X509Deleter> FirstCertificate(const std::string& pem) {
  auto bio = MemoryBio(pem);
  return std::unique_ptr<X509, X509Deleter>(
      PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

}  // namespace

absl::StatusOr<TlsConfig> TlsConfigFromJson(const nlohmann::json& json) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError("server config: field `tls`: expected an object");
  }
  TlsConfig tls;
  for (auto it = json.begin(); it != json.end(); ++it) {
    std::string* out = it.key() == "cert_file"        ? &tls.cert_file
                       : it.key() == "key_file"       ? &tls.key_file
                       : it.key() == "client_ca_file" ? &tls.client_ca_file
                                                      : nullptr;
    if (out == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("server config: field `tls.", it.key(), "`: unknown field"));
    }
    if (!it.value().is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("server config: field `tls.", it.key(), "`: expected a string (a path)"));
    }
    *out = it.value().get<std::string>();
  }
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError(
        "server config: field `tls`: cert_file and key_file go together");
  }
  if (!tls.client_ca_file.empty() && tls.cert_file.empty()) {
    return absl::InvalidArgumentError(
        "server config: field `tls.client_ca_file`: mTLS needs cert_file and key_file too");
  }
  return tls;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsConfig& tls) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  absl::StatusOr<std::string> cert = ReadPem("cert_file", tls.cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem("key_file", tls.key_file);
  if (!key.ok()) return key.status();

  std::unique_ptr<X509, X509Deleter> leaf = FirstCertificate(*cert);
  if (leaf == nullptr) return PemError("cert_file", tls.cert_file, "no PEM certificate");
  auto key_bio = MemoryBio(*key);
  std::unique_ptr<EVP_PKEY, KeyDeleter> pkey(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (pkey == nullptr) {
    return PemError("key_file", tls.key_file,
                    "no PEM private key (an encrypted key is not supported)");
  }
  if (X509_check_private_key(leaf.get(), pkey.get()) != 1) {
    return PemError("key_file", tls.key_file,
                    absl::StrCat("the key does not match the certificate in ", tls.cert_file));
  }

  grpc::SslServerCredentialsOptions options;
  options.pem_key_cert_pairs.push_back({*key, *cert});
  if (tls.mutual()) {
    absl::StatusOr<std::string> ca = ReadPem("client_ca_file", tls.client_ca_file);
    if (!ca.ok()) return ca.status();
    if (FirstCertificate(*ca) == nullptr) {
      return PemError("client_ca_file", tls.client_ca_file, "no PEM certificate");
    }
    options.pem_root_certs = *ca;
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  } else {
    options.client_certificate_request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  }
  ERR_clear_error();
  return grpc::SslServerCredentials(options);
}

}  // namespace loopserve

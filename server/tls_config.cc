#include "server/tls_config.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdint>
#include <ctime>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace loopserve {
namespace {

constexpr int64_t kMaxReloadSeconds = 86400;

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
    if (it.key() == "reload_interval_seconds") {
      const nlohmann::json& v = it.value();
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxReloadSeconds) {
        return absl::InvalidArgumentError(absl::StrCat(
            "server config: field `tls.reload_interval_seconds`: expected an integer in [0, ",
            kMaxReloadSeconds, "] (0 = no reload)"));
      }
      tls.reload_interval_seconds = v.get<int>();
      continue;
    }
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
  if (tls.reload_interval_seconds > 0 && tls.cert_file.empty()) {
    return absl::InvalidArgumentError(
        "server config: field `tls.reload_interval_seconds`: needs cert_file and key_file");
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

absl::StatusOr<TlsFiles> ReadTlsFiles(const TlsConfig& tls) {
  TlsFiles files;
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
  struct tm not_after {};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(leaf.get()), &not_after) == 1) {
    files.not_after_unix_seconds = static_cast<int64_t>(timegm(&not_after));
  }
  if (tls.mutual()) {
    absl::StatusOr<std::string> ca = ReadPem("client_ca_file", tls.client_ca_file);
    if (!ca.ok()) return ca.status();
    if (FirstCertificate(*ca) == nullptr) {
      return PemError("client_ca_file", tls.client_ca_file, "no PEM certificate");
    }
    files.client_ca = *std::move(ca);
  }
  ERR_clear_error();
  files.cert = *std::move(cert);
  files.key = *std::move(key);
  return files;
}

grpc_ssl_client_certificate_request_type ClientCertificateRequest(const TlsConfig& tls) {
  return tls.mutual() ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                      : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsConfig& tls, int64_t* not_after_unix_seconds) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  absl::StatusOr<TlsFiles> files = ReadTlsFiles(tls);
  if (!files.ok()) return files.status();
  if (not_after_unix_seconds != nullptr) *not_after_unix_seconds = files->not_after_unix_seconds;
  grpc::SslServerCredentialsOptions options;
  options.pem_key_cert_pairs.push_back({files->key, files->cert});
  options.pem_root_certs = files->client_ca;
  options.client_certificate_request = ClientCertificateRequest(tls);
  return grpc::SslServerCredentials(options);
}

}  // namespace loopserve

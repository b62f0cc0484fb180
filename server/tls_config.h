// TLS on the gRPC port: the config's certificate, key and optional client
// CA (which turns on mTLS: clients must present a certificate it signed).
// The files are read and checked at start-up (PEM parses, key matches the
// certificate) so a bad file stops the server with its name, rather than
// failing every handshake later. With `reload_interval_seconds` the server
// rereads them that often and serves a renewal without a restart
// (server/tls_reloader.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"
#include "nlohmann/json_fwd.hpp"

namespace loopserve {

struct TlsConfig {
  std::string cert_file;       // PEM certificate chain, leaf first
  std::string key_file;        // PEM private key of the leaf
  std::string client_ca_file;  // PEM CA bundle; set = require and verify client certs
  int reload_interval_seconds = 0;  // 0 = read once at start-up

  bool enabled() const { return !cert_file.empty(); }
  bool mutual() const { return !client_ca_file.empty(); }
};

// {"cert_file": ..., "key_file": ..., "client_ca_file": ...,
//  "reload_interval_seconds": 0..86400}; InvalidArgument naming the field
// (`tls.<field>`).
absl::StatusOr<TlsConfig> TlsConfigFromJson(const nlohmann::json& json);

// The files' PEM texts after the checks: the certificate parses, the key
// is unencrypted and matches it, the client CA (mTLS) parses. Errors name
// the config field, the file and what is wrong with it.
struct TlsFiles {
  std::string cert;
  std::string key;
  std::string client_ca;  // empty without mTLS
  int64_t not_after_unix_seconds = 0;  // the leaf's expiry (0 = unreadable)

  bool operator==(const TlsFiles& other) const = default;
};
absl::StatusOr<TlsFiles> ReadTlsFiles(const TlsConfig& tls);

// Whether clients must present a certificate (mTLS) or are not asked.
grpc_ssl_client_certificate_request_type ClientCertificateRequest(const TlsConfig& tls);

// Insecure credentials when TLS is off; otherwise the checked files, read
// once (TlsReloader serves the reloading kind). `not_after_unix_seconds`,
// when given, receives the certificate's expiry.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsConfig& tls, int64_t* not_after_unix_seconds = nullptr);

}  // namespace loopserve

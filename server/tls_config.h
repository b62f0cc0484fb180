// TLS on the gRPC port: the config's certificate, key and optional client
// CA (which turns on mTLS: clients must present a certificate it signed).
// The files are read and checked at start-up (PEM parses, key matches the
// certificate) so a bad file stops the server with its name, rather than
// failing every handshake later.
#pragma once

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

  bool enabled() const { return !cert_file.empty(); }
  bool mutual() const { return !client_ca_file.empty(); }
};

// {"cert_file": ..., "key_file": ..., "client_ca_file": ...}; InvalidArgument
// naming the field (`tls.<field>`).
absl::StatusOr<TlsConfig> TlsConfigFromJson(const nlohmann::json& json);

// Insecure credentials when TLS is off; otherwise reads and checks the
// files. Errors name the file and what is wrong with it.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsConfig& tls);

}  // namespace loopserve

// A throw-away PKI for the TLS integration tests, made with the openssl CLI
// at test time: a test CA, a server certificate for 127.0.0.1/localhost, a
// client certificate from the same CA, and a client certificate from a
// second ("rogue") CA the server does not trust. Plus TLS channel helpers.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"

namespace loopserve::testing {

struct TestPki {
  std::string ca_cert;  // PEM paths
  std::string server_cert;
  std::string server_key;
  std::string client_cert;
  std::string client_key;
  std::string rogue_cert;  // client cert signed by a CA the server does not know
  std::string rogue_key;
  std::string rogue_ca_cert;
};

// True when the openssl CLI can be run (tests skip without it).
bool HaveOpenssl();
// Generates everything into `dir`; errors carry openssl's output.
absl::StatusOr<TestPki> MakeTestPki(const std::string& dir);

// The whole file as a string ("" when unreadable).
std::string ReadFile(const std::string& path);

// A TLS channel to `address` trusting `ca_cert`; with `client_cert` and
// `client_key` (paths, may be empty) it presents a client certificate.
std::shared_ptr<grpc::Channel> TlsChannel(const std::string& address, const std::string& ca_cert,
                                          const std::string& client_cert = "",
                                          const std::string& client_key = "");

}  // namespace loopserve::testing

// How the server manages client connections (HTTP/2 under gRPC): the
// config's `connections` block.
// - Keepalive: while a call is open, the server pings a connection that has
//   been quiet for `keepalive_time_seconds` and closes it when no answer
//   comes within `keepalive_timeout_seconds`, so a client that vanished
//   without closing (crashed host, network partition) has its calls
//   cancelled and their KV freed within about a minute and a half, not
//   gRPC's default two hours. (A connection with no call open is not
//   pinged; it holds nothing but its socket.)
// - Maximum age: a connection older than `max_connection_age_seconds` gets
//   a GOAWAY; calls on it may finish within `max_connection_age_grace_
//   seconds`, then it closes. Clients reconnect and re-resolve, so a
//   scale-out reaches long-lived clients and per-connection (L4) balancing
//   evens out (docs/operations.md, "Scaling out").
#pragma once

#include "absl/status/statusor.h"
#include "grpcpp/server_builder.h"
#include "nlohmann/json_fwd.hpp"

namespace loopserve {

struct ConnectionConfig {
  int keepalive_time_seconds = 60;
  int keepalive_timeout_seconds = 20;
  int max_connection_age_seconds = 0;  // 0 = connections never age out
  int max_connection_age_grace_seconds = 300;
};

// {"keepalive_time_seconds": 60, ...}; each a whole number of seconds,
// InvalidArgument naming `connections.<field>`.
absl::StatusOr<ConnectionConfig> ConnectionConfigFromJson(const nlohmann::json& json);
absl::Status ValidateConnectionConfig(const ConnectionConfig& config);

// Sets the matching gRPC channel arguments on the server being built.
void ApplyConnectionConfig(const ConnectionConfig& config, grpc::ServerBuilder& builder);

}  // namespace loopserve

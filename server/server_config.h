// The server's configuration: a JSON file (deploy/config.example.json) with
// addresses, model, backend, engine sizes, queue and request limits, TLS,
// API keys and the deployments, overridable by command-line flags
// (server/main.cc). Deployments stay raw JSON here: they are validated
// against the model once it is loaded.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/exit_policy.h"
#include "engine/model_config.h"
#include "nlohmann/json.hpp"
#include "server/api_keys.h"
#include "server/connection_config.h"
#include "server/request_limits.h"
#include "server/tls_config.h"

namespace loopserve {

struct ServerConfig {
  std::string listen_address = "127.0.0.1:50051";  // port 0 picks a free port
  std::string metrics_address = "127.0.0.1:9464";  // Prometheus exposer; "" = off
  std::string model_dir = "models/demo";
  std::string backend = "cpu";  // cpu | cuda | auto (cuda/auto fall back to cpu)
  int num_threads = 0;          // 0 = all cores
  int64_t kv_cache_bytes = int64_t{256} << 20;
  int block_size = 16;
  int max_batch_tokens = 512;
  int max_num_seqs = 64;
  int max_queued_requests = 256;
  double drain_grace_seconds = 30;
  std::string default_deployment;  // empty = the first deployment
  // DeploymentFromJson objects; empty = one deployment "default" (never).
  std::vector<nlohmann::json> deployments;
  RequestLimits limits;  // server-wide caps on one request
  TlsConfig tls;         // off = plaintext (local use)
  ConnectionConfig connections;  // keepalive, maximum connection age
  // Empty = no authentication (every call is admitted; a warning at start
  // when the listen address is not loopback).
  std::vector<ApiKeyConfig> api_keys;
};

// Parses the config file's JSON. Unknown fields, wrong types and
// out-of-range values are InvalidArgument naming the field.
absl::StatusOr<ServerConfig> ServerConfigFromJson(const nlohmann::json& json);
absl::StatusOr<ServerConfig> LoadServerConfig(const std::string& path);
// Range checks shared by the file and the flags (run after flags apply).
absl::Status ValidateServerConfig(const ServerConfig& config);
// True for 127.0.0.0/8, ::1 and localhost (the host part of "host:port").
bool IsLoopbackAddress(const std::string& address);

// <model_dir>/exit_policies.json ({"policies": {"name": {policy}}}), each
// policy validated against `model`. A missing file is an empty map.
absl::StatusOr<std::map<std::string, ExitPolicy>> LoadNamedPolicies(const std::string& model_dir,
                                                                    const ModelConfig& model);

}  // namespace loopserve

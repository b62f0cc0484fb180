#include "server/server_config.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "engine/named_policies.h"

namespace loopserve {
namespace {

absl::Status FieldError(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("server config: field `", field, "`: ", what));
}

// Reads `json[field]` into `out` when present; a wrong type names the field.
template <typename T>
absl::Status ReadField(const nlohmann::json& json, const std::string& field, T& out) {
  if (!json.contains(field)) return absl::OkStatus();
  const nlohmann::json& v = json.at(field);
  if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) return FieldError(field, "expected a string");
  } else if constexpr (std::is_integral_v<T>) {
    if (!v.is_number_integer()) return FieldError(field, "expected an integer");
  } else {
    if (!v.is_number()) return FieldError(field, "expected a number");
  }
  out = v.get<T>();
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

absl::StatusOr<ServerConfig> ServerConfigFromJson(const nlohmann::json& json) {
  if (!json.is_object()) return absl::InvalidArgumentError("server config: expected a JSON object");
  static const char* kFields[] = {"listen_address",
                                  "metrics_address",
                                  "model_dir",
                                  "backend",
                                  "num_threads",
                                  "kv_cache_bytes",
                                  "block_size",
                                  "max_batch_tokens",
                                  "max_num_seqs",
                                  "max_queued_requests",
                                  "drain_grace_seconds",
                                  "default_deployment",
                                  "deployments",
                                  "limits",
                                  "tls",
                                  "connections",
                                  "api_keys"};
  for (auto it = json.begin(); it != json.end(); ++it) {
    bool known = false;
    for (const char* f : kFields) known |= it.key() == f;
    if (!known) return FieldError(it.key(), "unknown field");
  }
  ServerConfig c;
  for (absl::Status s :
       {ReadField(json, "listen_address", c.listen_address),
        ReadField(json, "metrics_address", c.metrics_address),
        ReadField(json, "model_dir", c.model_dir), ReadField(json, "backend", c.backend),
        ReadField(json, "num_threads", c.num_threads),
        ReadField(json, "kv_cache_bytes", c.kv_cache_bytes),
        ReadField(json, "block_size", c.block_size),
        ReadField(json, "max_batch_tokens", c.max_batch_tokens),
        ReadField(json, "max_num_seqs", c.max_num_seqs),
        ReadField(json, "max_queued_requests", c.max_queued_requests),
        ReadField(json, "drain_grace_seconds", c.drain_grace_seconds),
        ReadField(json, "default_deployment", c.default_deployment)}) {
    if (!s.ok()) return s;
  }
  if (json.contains("deployments")) {
    const nlohmann::json& d = json.at("deployments");
    if (!d.is_array()) return FieldError("deployments", "expected an array of objects");
    for (size_t i = 0; i < d.size(); ++i) {
      if (!d[i].is_object()) {
        return FieldError(absl::StrCat("deployments[", i, "]"), "expected an object");
      }
      c.deployments.push_back(d[i]);
    }
  }
  if (json.contains("limits")) {
    absl::StatusOr<RequestLimits> limits = RequestLimitsFromJson(json.at("limits"));
    if (!limits.ok()) return limits.status();
    c.limits = *limits;
  }
  if (json.contains("tls")) {
    absl::StatusOr<TlsConfig> tls = TlsConfigFromJson(json.at("tls"));
    if (!tls.ok()) return tls.status();
    c.tls = *tls;
  }
  if (json.contains("connections")) {
    absl::StatusOr<ConnectionConfig> connections = ConnectionConfigFromJson(json.at("connections"));
    if (!connections.ok()) return connections.status();
    c.connections = *connections;
  }
  if (json.contains("api_keys")) {
    const nlohmann::json& keys = json.at("api_keys");
    if (!keys.is_array()) return FieldError("api_keys", "expected an array of objects");
    for (size_t i = 0; i < keys.size(); ++i) {
      absl::StatusOr<ApiKeyConfig> key =
          ApiKeyFromJson(keys[i], absl::StrCat("server config: field `api_keys[", i, "]`"));
      if (!key.ok()) return key.status();
      c.api_keys.push_back(*std::move(key));
    }
  }
  if (absl::Status s = ValidateServerConfig(c); !s.ok()) return s;
  return c;
}

bool IsLoopbackAddress(const std::string& address) {
  std::string host = address;
  for (const char* scheme : {"ipv4:", "ipv6:", "dns:"}) {
    if (host.rfind(scheme, 0) == 0) host = host.substr(std::string(scheme).size());
  }
  if (host.rfind('[', 0) == 0) {
    host = host.substr(1, host.find(']') - 1);  // "[v6]:port"
  } else if (const size_t colon = host.rfind(':');
             colon != std::string::npos && host.find(':') == colon) {
    host = host.substr(0, colon);  // "host:port"
  }
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

absl::Status ValidateServerConfig(const ServerConfig& c) {
  if (c.listen_address.empty()) return FieldError("listen_address", "must not be empty");
  if (c.model_dir.empty()) return FieldError("model_dir", "must not be empty");
  if (c.backend != "cpu" && c.backend != "cuda" && c.backend != "auto") {
    return FieldError("backend", absl::StrCat("expected cpu, cuda or auto, got `", c.backend, "`"));
  }
  if (c.num_threads < 0) return FieldError("num_threads", "must be >= 0 (0 = all cores)");
  if (c.kv_cache_bytes < 1) return FieldError("kv_cache_bytes", "must be >= 1");
  if (c.block_size < 1) return FieldError("block_size", "must be >= 1");
  if (c.max_batch_tokens < 1) return FieldError("max_batch_tokens", "must be >= 1");
  if (c.max_num_seqs < 1) return FieldError("max_num_seqs", "must be >= 1");
  if (c.max_queued_requests < 1) return FieldError("max_queued_requests", "must be >= 1");
  if (!(c.drain_grace_seconds >= 0)) return FieldError("drain_grace_seconds", "must be >= 0");
  if (absl::Status s = ValidateRequestLimits(c.limits); !s.ok()) return s;
  if (absl::Status s = ValidateConnectionConfig(c.connections); !s.ok()) return s;
  if (absl::Status s = ValidateApiKeys(c.api_keys); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("server config: ", s.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<ServerConfig> LoadServerConfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadText(path);
  if (!text.ok()) return absl::NotFoundError(absl::StrCat("server config: cannot open ", path));
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(*text);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": invalid JSON: ", e.what()));
  }
  absl::StatusOr<ServerConfig> config = ServerConfigFromJson(json);
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

absl::StatusOr<std::map<std::string, ExitPolicy>> LoadNamedPolicies(const std::string& model_dir,
                                                                    const ModelConfig& model) {
  const std::string path = (std::filesystem::path(model_dir) / "exit_policies.json").string();
  if (!std::filesystem::exists(path)) return std::map<std::string, ExitPolicy>();
  absl::StatusOr<std::string> text = ReadText(path);
  if (!text.ok()) return text.status();
  // One parser for the server and the calibration tool that writes the file.
  absl::StatusOr<std::map<std::string, ExitPolicy>> parsed = ParseNamedPolicies(*text, &model);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", parsed.status().message()));
  }
  return parsed;
}

}  // namespace loopserve

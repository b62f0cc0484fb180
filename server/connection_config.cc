#include "server/connection_config.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace loopserve {
namespace {

constexpr int kMaxSeconds = 7 * 86400;  // a week: beyond it, use 0 (off) where allowed

absl::Status ConnectionError(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("server config: field `connections.", field, "`: ", what));
}

int Milliseconds(int seconds) { return seconds * 1000; }  // kMaxSeconds * 1000 fits in int

}  // namespace

absl::StatusOr<ConnectionConfig> ConnectionConfigFromJson(const nlohmann::json& json) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError("server config: field `connections`: expected an object");
  }
  ConnectionConfig c;
  for (auto it = json.begin(); it != json.end(); ++it) {
    int* out = it.key() == "keepalive_time_seconds"             ? &c.keepalive_time_seconds
               : it.key() == "keepalive_timeout_seconds"        ? &c.keepalive_timeout_seconds
               : it.key() == "max_connection_age_seconds"       ? &c.max_connection_age_seconds
               : it.key() == "max_connection_age_grace_seconds" ? &c.max_connection_age_grace_seconds
                                                                : nullptr;
    if (out == nullptr) return ConnectionError(it.key(), "unknown field");
    const nlohmann::json& v = it.value();
    // The type here, the range once in ValidateConnectionConfig (which
    // ValidateServerConfig also runs); beyond int is out of range anyway.
    if (!v.is_number_integer()) {
      return ConnectionError(it.key(), "expected a whole number of seconds");
    }
    *out = static_cast<int>(std::clamp<int64_t>(v.get<int64_t>(), -1, kMaxSeconds + 1));
  }
  if (absl::Status s = ValidateConnectionConfig(c); !s.ok()) return s;
  return c;
}

absl::Status ValidateConnectionConfig(const ConnectionConfig& c) {
  for (const auto& [name, value] :
       {std::pair<const char*, int>{"keepalive_time_seconds", c.keepalive_time_seconds},
        {"keepalive_timeout_seconds", c.keepalive_timeout_seconds},
        {"max_connection_age_seconds", c.max_connection_age_seconds},
        {"max_connection_age_grace_seconds", c.max_connection_age_grace_seconds}}) {
    if (value < 0 || value > kMaxSeconds) {
      return ConnectionError(name, absl::StrCat("must be in [0, ", kMaxSeconds, "]"));
    }
  }
  // gRPC would accept these, but a ping every second or an answer expected
  // at once would close healthy connections of busy clients.
  if (c.keepalive_time_seconds < 10) {
    return ConnectionError("keepalive_time_seconds", "must be >= 10");
  }
  if (c.keepalive_timeout_seconds < 1) {
    return ConnectionError("keepalive_timeout_seconds", "must be >= 1");
  }
  return absl::OkStatus();
}

void ApplyConnectionConfig(const ConnectionConfig& c, grpc::ServerBuilder& builder) {
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, Milliseconds(c.keepalive_time_seconds));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             Milliseconds(c.keepalive_timeout_seconds));
  if (c.max_connection_age_seconds > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                               Milliseconds(c.max_connection_age_seconds));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                               Milliseconds(c.max_connection_age_grace_seconds));
  }
}

}  // namespace loopserve

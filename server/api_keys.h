// API keys as the server config holds them: never the secret, only its
// SHA-256 (hex), with what the key may do (deployments, Admin, rate and
// concurrency limits). Also the hashing, the `authorization: Bearer <key>`
// parsing and the constant-time lookup of a presented key.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace loopserve {

struct ApiKeyConfig {
  std::string name;                      // what logs and errors say, never the key
  std::string sha256;                    // lowercase hex SHA-256 of the secret key
  std::vector<std::string> deployments;  // deployments it may use; "*" = all
  double requests_per_second = 0;        // token-bucket rate; 0 = unlimited
  double burst = 0;                      // bucket size; 0 = max(1, requests_per_second)
  int max_concurrent = 0;                // Generate/GenerateStream calls at once; 0 = unlimited
  bool admin = false;                    // may call loopserve.v1.Admin

  bool AllowsDeployment(const std::string& deployment) const;
};

// {"name": "team-a", "sha256": "<64 hex>", "deployments": ["default"],
//  "requests_per_second": 5, "burst": 10, "max_concurrent": 4, "admin": false}.
// Errors are InvalidArgument naming `where` and the field.
absl::StatusOr<ApiKeyConfig> ApiKeyFromJson(const nlohmann::json& json, const std::string& where);
// Names unique, hashes unique (one secret, one identity).
absl::Status ValidateApiKeys(const std::vector<ApiKeyConfig>& keys);

// Lowercase hex SHA-256 of `data` (OpenSSL's EVP digest).
std::string Sha256Hex(std::string_view data);
// Equal length and bytes, in time independent of where they differ
// (OpenSSL's CRYPTO_memcmp).
bool ConstantTimeEquals(std::string_view a, std::string_view b);
// The key of an `authorization` value "Bearer <key>" (scheme
// case-insensitive); Unauthenticated for any other form. The message never
// contains the value.
absl::StatusOr<std::string_view> BearerKey(std::string_view authorization);

// Finds which configured key a presented secret is: hashes it and compares
// against every configured hash (no early exit), so timing says nothing
// about which hash, or how much of one, matched.
class ApiKeyTable {
 public:
  explicit ApiKeyTable(std::vector<ApiKeyConfig> keys) : keys_(std::move(keys)) {}
  // Index into keys(), or -1 when no key matches.
  int Find(std::string_view presented_key) const;
  const std::vector<ApiKeyConfig>& keys() const { return keys_; }

 private:
  std::vector<ApiKeyConfig> keys_;
};

}  // namespace loopserve

#include "server/api_keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kernels/common/check.h"
#include "nlohmann/json.hpp"

namespace loopserve {
namespace {

absl::Status FieldError(const std::string& where, const std::string& field,
                        const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ".", field, ": ", what));
}

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

bool ApiKeyConfig::AllowsDeployment(const std::string& deployment) const {
  for (const std::string& d : deployments) {
    if (d == "*" || d == deployment) return true;
  }
  return false;
}

absl::StatusOr<ApiKeyConfig> ApiKeyFromJson(const nlohmann::json& json, const std::string& where) {
  if (!json.is_object())
    return absl::InvalidArgumentError(absl::StrCat(where, ": expected an object"));
  static const std::set<std::string> kFields = {
      "name", "sha256", "deployments", "requests_per_second", "burst", "max_concurrent", "admin"};
  for (auto it = json.begin(); it != json.end(); ++it) {
    if (kFields.count(it.key()) == 0) {
      if (it.key() == "key") {
        return FieldError(where, "key",
                          "plaintext keys are not accepted; store its SHA-256 in `sha256` "
                          "(loopserve-server --hash_api_key)");
      }
      return FieldError(where, it.key(), "unknown field");
    }
  }
  ApiKeyConfig k;
  if (!json.contains("name") || !json.at("name").is_string() ||
      json.at("name").get<std::string>().empty()) {
    return FieldError(where, "name", "a non-empty string is required");
  }
  k.name = json.at("name").get<std::string>();
  const std::string at = absl::StrCat(where, " (", k.name, ")");
  if (!json.contains("sha256") || !json.at("sha256").is_string()) {
    return FieldError(at, "sha256", "a string of 64 hex digits is required");
  }
  k.sha256 = absl::AsciiStrToLower(json.at("sha256").get<std::string>());
  if (k.sha256.size() != 64 || !IsLowerHex(k.sha256)) {
    return FieldError(at, "sha256", "expected 64 hex digits (SHA-256 of the key)");
  }
  if (!json.contains("deployments") || !json.at("deployments").is_array()) {
    return FieldError(at, "deployments", "an array of deployment names (or \"*\") is required");
  }
  for (const nlohmann::json& d : json.at("deployments")) {
    if (!d.is_string() || d.get<std::string>().empty()) {
      return FieldError(at, "deployments", "expected non-empty strings");
    }
    k.deployments.push_back(d.get<std::string>());
  }
  if (json.contains("requests_per_second")) {
    const nlohmann::json& v = json.at("requests_per_second");
    if (!v.is_number() || !(v.get<double>() >= 0)) {
      return FieldError(at, "requests_per_second", "expected a number >= 0 (0 = unlimited)");
    }
    k.requests_per_second = v.get<double>();
  }
  if (json.contains("burst")) {
    const nlohmann::json& v = json.at("burst");
    if (!v.is_number() || !(v.get<double>() >= 0)) {
      return FieldError(at, "burst", "expected a number >= 0");
    }
    k.burst = v.get<double>();
  }
  if (json.contains("max_concurrent")) {
    const nlohmann::json& v = json.at("max_concurrent");
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 1000000) {
      return FieldError(at, "max_concurrent", "expected an integer >= 0 (0 = unlimited)");
    }
    k.max_concurrent = v.get<int>();
  }
  if (json.contains("admin")) {
    if (!json.at("admin").is_boolean()) return FieldError(at, "admin", "expected true or false");
    k.admin = json.at("admin").get<bool>();
  }
  return k;
}

absl::Status ValidateApiKeys(const std::vector<ApiKeyConfig>& keys) {
  std::set<std::string> names;
  std::set<std::string> hashes;
  for (const ApiKeyConfig& k : keys) {
    if (!names.insert(k.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("api_keys: duplicate name `", k.name, "`"));
    }
    if (!hashes.insert(k.sha256).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("api_keys: key `", k.name, "` has the same sha256 as another key"));
    }
  }
  return absl::OkStatus();
}

std::string Sha256Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  // EVP_Digest fails only on allocation failure or a broken OpenSSL.
  LOOPSERVE_CHECK(EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr) ==
                  1);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * length);
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0xf]);
  }
  return hex;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;  // lengths are public (always 64 here)
  // OpenSSL's comparison is written so compilers cannot turn it back into
  // an early-exit memcmp.
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

absl::StatusOr<std::string_view> BearerKey(std::string_view authorization) {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(absl::string_view(authorization.data(), kScheme.size()),
                              absl::string_view(kScheme.data(), kScheme.size()))) {
    return absl::UnauthenticatedError("the authorization metadata must be `Bearer <api key>`");
  }
  std::string_view key = authorization.substr(kScheme.size());
  while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
  while (!key.empty() && key.back() == ' ') key.remove_suffix(1);
  if (key.empty()) {
    return absl::UnauthenticatedError("the authorization metadata must be `Bearer <api key>`");
  }
  return key;
}

int ApiKeyTable::Find(std::string_view presented_key) const {
  const std::string hash = Sha256Hex(presented_key);
  int found = -1;
  for (size_t i = 0; i < keys_.size(); ++i) {
    // No early exit: every configured hash is compared.
    if (ConstantTimeEquals(hash, keys_[i].sha256) && found < 0) found = static_cast<int>(i);
  }
  return found;
}

}  // namespace loopserve

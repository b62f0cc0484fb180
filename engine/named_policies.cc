#include "engine/named_policies.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace loopserve {
namespace {

constexpr char kExpectedShape[] = "expected {\"policies\": {\"name\": {policy}}}";

absl::StatusOr<nlohmann::json> ParseShape(absl::string_view text) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("exit_policies.json: invalid JSON: ", e.what()));
  }
  if (!json.is_object() || !json.contains("policies") || !json.at("policies").is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("exit_policies.json: ", kExpectedShape));
  }
  return json;
}

}  // namespace

absl::StatusOr<std::map<std::string, ExitPolicy>> ParseNamedPolicies(absl::string_view text,
                                                                     const ModelConfig* model) {
  absl::StatusOr<nlohmann::json> json = ParseShape(text);
  if (!json.ok()) return json.status();
  std::map<std::string, ExitPolicy> out;
  for (const auto& [name, value] : json->at("policies").items()) {
    absl::StatusOr<ExitPolicy> policy = ExitPolicyFromJson(value);
    if (policy.ok() && model != nullptr) {
      if (absl::Status s = ValidateExitPolicy(*policy, *model); !s.ok()) policy = s;
    }
    if (!policy.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("exit_policies.json: policy \"", name, "\": ", policy.status().message()));
    }
    out.emplace(name, *policy);
  }
  return out;
}

absl::StatusOr<std::string> MergeNamedPolicy(const std::optional<std::string>& existing_text,
                                             const std::string& name, const ExitPolicy& policy) {
  if (name.empty()) return absl::InvalidArgumentError("exit_policies.json: empty policy name");
  nlohmann::json json = {{"policies", nlohmann::json::object()}};
  if (existing_text.has_value()) {
    // Every existing entry must parse, so a broken file is reported, not
    // silently carried along.
    if (absl::Status s = ParseNamedPolicies(*existing_text).status(); !s.ok()) return s;
    json = *ParseShape(*existing_text);
  }
  json["policies"][name] = ExitPolicyToJson(policy);
  return json.dump(2) + "\n";
}

}  // namespace loopserve

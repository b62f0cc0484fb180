#include "engine/deployment.h"

#include <climits>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace loopserve {
namespace {

absl::Status FieldError(const std::string& deployment, const std::string& field,
                        const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("deployment `", deployment, "`: field `", field, "`: ", what));
}

// `obj[key]` into *out when present. nlohmann's get<int>() converts a double
// or a 64-bit value unchecked (1e300 is undefined behaviour), so counts must
// be JSON integers in int range.
absl::Status ReadInt(const nlohmann::json& obj, const char* key, const std::string& deployment,
                     const std::string& field, int* out) {
  if (!obj.contains(key)) return absl::OkStatus();
  const nlohmann::json& v = obj.at(key);
  bool in_range = false;
  if (v.is_number_unsigned()) {
    in_range = v.get<uint64_t>() <= uint64_t{INT_MAX};
  } else if (v.is_number_integer()) {
    in_range = v.get<int64_t>() >= int64_t{INT_MIN} && v.get<int64_t>() <= int64_t{INT_MAX};
  }
  if (!in_range) return FieldError(deployment, field, "expected an integer in int range");
  *out = static_cast<int>(v.get<int64_t>());
  return absl::OkStatus();
}

absl::StatusOr<SamplingParams> SamplingFromJson(const nlohmann::json& j,
                                                const std::string& deployment) {
  SamplingParams p;
  // Iterating keys of a non-object throws (nlohmann invalid_iterator).
  if (!j.is_object()) return FieldError(deployment, "sampling", "expected an object");
  static const char* kFields[] = {"temperature", "top_k", "top_p", "seed", "logprobs"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool known = false;
    for (const char* f : kFields) known |= it.key() == f;
    if (!known) return FieldError(deployment, "sampling." + it.key(), "unknown field");
  }
  if (absl::Status s = ReadInt(j, "top_k", deployment, "sampling.top_k", &p.top_k); !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadInt(j, "logprobs", deployment, "sampling.logprobs", &p.logprobs);
      !s.ok()) {
    return s;
  }
  try {
    if (j.contains("temperature")) p.temperature = j.at("temperature").get<float>();
    if (j.contains("top_p")) p.top_p = j.at("top_p").get<float>();
    if (j.contains("seed")) p.seed = j.at("seed").get<uint64_t>();
  } catch (const nlohmann::json::exception& e) {
    return FieldError(deployment, "sampling", e.what());
  }
  if (absl::Status s = ValidateSamplingParams(p); !s.ok()) {
    return FieldError(deployment, "sampling", std::string(s.message()));
  }
  return p;
}

}  // namespace

absl::StatusOr<Deployment> DeploymentFromJson(const nlohmann::json& json, const ModelConfig& config,
                                              const std::map<std::string, ExitPolicy>& named) {
  Deployment d;
  if (!json.is_object() || !json.contains("name") || !json.at("name").is_string() ||
      json.at("name").get<std::string>().empty()) {
    return absl::InvalidArgumentError("deployment: field `name` (non-empty string) is required");
  }
  d.name = json.at("name").get<std::string>();
  static const char* kFields[] = {"name",     "exit_policy",        "policy",
                                  "sampling", "default_max_tokens", "limits"};
  for (auto it = json.begin(); it != json.end(); ++it) {
    bool known = false;
    for (const char* f : kFields) known |= it.key() == f;
    if (!known) return FieldError(d.name, it.key(), "unknown field");
  }
  if (json.contains("policy") && json.contains("exit_policy")) {
    return FieldError(d.name, "policy", "give either `policy` (a name) or `exit_policy`");
  }
  if (json.contains("policy")) {
    if (!json.at("policy").is_string()) return FieldError(d.name, "policy", "expected a string");
    d.policy_name = json.at("policy").get<std::string>();
    auto it = named.find(d.policy_name);
    if (it == named.end()) {
      return FieldError(d.name, "policy", absl::StrCat("no named policy `", d.policy_name, "`"));
    }
    d.policy = it->second;
  } else if (json.contains("exit_policy")) {
    absl::StatusOr<ExitPolicy> policy = ExitPolicyFromJson(json.at("exit_policy"));
    if (!policy.ok())
      return FieldError(d.name, "exit_policy", std::string(policy.status().message()));
    d.policy = *policy;
  }
  if (absl::Status s = ValidateExitPolicy(d.policy, config); !s.ok()) {
    return FieldError(d.name, "exit_policy", std::string(s.message()));
  }
  if (json.contains("sampling")) {
    absl::StatusOr<SamplingParams> sampling = SamplingFromJson(json.at("sampling"), d.name);
    if (!sampling.ok()) return sampling.status();
    d.default_sampling = *sampling;
  }
  if (absl::Status s =
          ReadInt(json, "default_max_tokens", d.name, "default_max_tokens", &d.default_max_tokens);
      !s.ok()) {
    return s;
  }
  try {
    if (json.contains("limits")) {
      const nlohmann::json& l = json.at("limits");
      for (auto it = l.begin(); it != l.end(); ++it) {
        if (it.key() != "max_prompt_tokens" && it.key() != "max_tokens" &&
            it.key() != "allow_exit_overrides") {
          return FieldError(d.name, "limits." + it.key(), "unknown field");
        }
      }
      if (absl::Status s = ReadInt(l, "max_prompt_tokens", d.name, "limits.max_prompt_tokens",
                                   &d.limits.max_prompt_tokens);
          !s.ok()) {
        return s;
      }
      if (absl::Status s =
              ReadInt(l, "max_tokens", d.name, "limits.max_tokens", &d.limits.max_tokens);
          !s.ok()) {
        return s;
      }
      if (l.contains("allow_exit_overrides")) {
        d.limits.allow_exit_overrides = l.at("allow_exit_overrides").get<bool>();
      }
    }
  } catch (const nlohmann::json::exception& e) {
    return FieldError(d.name, "limits", e.what());
  }
  if (d.limits.max_tokens < 1 || d.default_max_tokens < 1 || d.limits.max_prompt_tokens < 0) {
    return FieldError(d.name, "limits", "max_tokens and default_max_tokens must be >= 1");
  }
  return d;
}

absl::Status DeploymentRegistry::Add(Deployment deployment) {
  if (absl::Status s = ValidateExitPolicy(deployment.policy, config_); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  const std::string name = deployment.name;
  if (!deployments_.emplace(name, std::move(deployment)).second) {
    return absl::AlreadyExistsError(absl::StrCat("deployment `", name, "` defined twice"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Deployment> DeploymentRegistry::Get(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = deployments_.find(name);
  if (it == deployments_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown deployment `", name, "`"));
  }
  return it->second;
}

std::vector<Deployment> DeploymentRegistry::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<Deployment> out;
  for (const auto& [name, d] : deployments_) out.push_back(d);
  return out;
}

absl::StatusOr<Deployment> DeploymentRegistry::SetPolicy(const std::string& name,
                                                         const ExitPolicy& policy) {
  if (absl::Status s = ValidateExitPolicy(policy, config_); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto it = deployments_.find(name);
  if (it == deployments_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown deployment `", name, "`"));
  }
  it->second.policy = policy;
  it->second.policy_name.clear();
  ++it->second.policy_version;
  return it->second;
}

}  // namespace loopserve

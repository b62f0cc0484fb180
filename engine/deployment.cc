#include "engine/deployment.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace loopserve {
namespace {

absl::Status FieldError(const std::string& deployment, const std::string& field,
                        const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("deployment `", deployment, "`: field `", field, "`: ", what));
}

absl::StatusOr<SamplingParams> SamplingFromJson(const nlohmann::json& j,
                                                const std::string& deployment) {
  SamplingParams p;
  static const char* kFields[] = {"temperature", "top_k", "top_p", "seed", "logprobs"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool known = false;
    for (const char* f : kFields) known |= it.key() == f;
    if (!known) return FieldError(deployment, "sampling." + it.key(), "unknown field");
  }
  try {
    if (j.contains("temperature")) p.temperature = j.at("temperature").get<float>();
    if (j.contains("top_k")) p.top_k = j.at("top_k").get<int>();
    if (j.contains("top_p")) p.top_p = j.at("top_p").get<float>();
    if (j.contains("seed")) p.seed = j.at("seed").get<uint64_t>();
    if (j.contains("logprobs")) p.logprobs = j.at("logprobs").get<int>();
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
  try {
    if (json.contains("default_max_tokens")) {
      d.default_max_tokens = json.at("default_max_tokens").get<int>();
    }
    if (json.contains("limits")) {
      const nlohmann::json& l = json.at("limits");
      for (auto it = l.begin(); it != l.end(); ++it) {
        if (it.key() != "max_prompt_tokens" && it.key() != "max_tokens" &&
            it.key() != "allow_exit_overrides") {
          return FieldError(d.name, "limits." + it.key(), "unknown field");
        }
      }
      if (l.contains("max_prompt_tokens")) {
        d.limits.max_prompt_tokens = l.at("max_prompt_tokens").get<int>();
      }
      if (l.contains("max_tokens")) d.limits.max_tokens = l.at("max_tokens").get<int>();
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

// Named deployments over one loaded model: each has its own exit policy,
// default sampling and limits, and shares the model's weights and KV pool
// with the others. The registry is thread-safe so an admin call can change
// a policy while requests read it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/exit_policy.h"
#include "engine/model_config.h"
#include "engine/sampler.h"
#include "nlohmann/json_fwd.hpp"

namespace loopserve {

struct DeploymentLimits {
  int max_prompt_tokens = 0;          // 0 = the model's context
  int max_tokens = 1024;              // cap on a request's max_tokens
  bool allow_exit_overrides = false;  // may a request bring its own policy?
};

struct Deployment {
  std::string name;
  ExitPolicy policy;
  std::string policy_name;  // named policy it came from, if any (metrics label)
  SamplingParams default_sampling;
  int default_max_tokens = 64;
  DeploymentLimits limits;
  int64_t policy_version = 0;  // bumped on every change
};

// {"name": "fast", "exit_policy": {...} | "policy": "<name>", "sampling": {...},
//  "default_max_tokens": 64, "limits": {...}}. `named_policies` resolves
// "policy" references (exit_policies.json of the model).
absl::StatusOr<Deployment> DeploymentFromJson(const nlohmann::json& json, const ModelConfig& config,
                                              const std::map<std::string, ExitPolicy>& named);

class DeploymentRegistry {
 public:
  explicit DeploymentRegistry(ModelConfig config) : config_(std::move(config)) {}

  absl::Status Add(Deployment deployment);
  absl::StatusOr<Deployment> Get(const std::string& name) const;
  std::vector<Deployment> List() const;
  // Validates against the model, then replaces the policy.
  absl::StatusOr<Deployment> SetPolicy(const std::string& name, const ExitPolicy& policy);

 private:
  const ModelConfig config_;
  mutable absl::Mutex mu_;
  std::map<std::string, Deployment> deployments_ ABSL_GUARDED_BY(mu_);
};

}  // namespace loopserve

// Fuzzes one deployment's JSON (engine/deployment, as in the server config's
// "deployments" list): any text that parses as JSON goes through
// DeploymentFromJson against a fixed model and named policies; an accepted
// deployment must be addable to a registry and hold valid limits.
#include <map>
#include <string>

#include "engine/deployment.h"
#include "nlohmann/json.hpp"
#include "tests/fuzz/fuzz_fixtures.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace loopserve;
  const nlohmann::json json = nlohmann::json::parse(fuzz::AsText(data, size), /*cb=*/nullptr,
                                                    /*allow_exceptions=*/false);
  if (json.is_discarded()) return 0;
  const ModelConfig& model = fuzz::SmallModelConfig();
  ExitPolicy fast;
  fast.criterion = ExitCriterion::kMaxProb;
  fast.threshold = 0.5;
  fast.max_loops = 2;
  const std::map<std::string, ExitPolicy> named = {{"fast", fast}, {"full", ExitPolicy{}}};

  absl::StatusOr<Deployment> deployment = DeploymentFromJson(json, model, named);
  if (!deployment.ok()) {
    LOOPSERVE_CHECK(!deployment.status().message().empty());
    return 0;
  }
  LOOPSERVE_CHECK(!deployment->name.empty());
  LOOPSERVE_CHECK_GE(deployment->limits.max_tokens, 1);
  LOOPSERVE_CHECK_GE(deployment->default_max_tokens, 1);
  LOOPSERVE_CHECK_GE(deployment->limits.max_prompt_tokens, 0);
  LOOPSERVE_CHECK_OK(ValidateSamplingParams(deployment->default_sampling));
  DeploymentRegistry registry(model);
  LOOPSERVE_CHECK_OK(registry.Add(*deployment));
  LOOPSERVE_CHECK_OK(registry.SetPolicy(deployment->name, fast).status());
  return 0;
}

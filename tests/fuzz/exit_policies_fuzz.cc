// Fuzzes exit_policies.json (engine/named_policies): any text, parsed with
// and without a model to validate against, and merged with a new policy the
// way the calibration tool rewrites the file. Whatever parses against the
// model must validate against it; a merge result must parse back.
#include <map>
#include <optional>
#include <string>

#include "engine/exit_policy.h"
#include "engine/named_policies.h"
#include "tests/fuzz/fuzz_fixtures.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace loopserve;
  const std::string text(fuzz::AsText(data, size));
  const ModelConfig& model = fuzz::SmallModelConfig();

  absl::StatusOr<std::map<std::string, ExitPolicy>> unchecked = ParseNamedPolicies(text);
  absl::StatusOr<std::map<std::string, ExitPolicy>> checked = ParseNamedPolicies(text, &model);
  if (checked.ok()) {
    LOOPSERVE_CHECK(unchecked.ok()) << "valid against the model but not without one";
    for (const auto& [name, policy] : *checked) {
      LOOPSERVE_CHECK_OK(ValidateExitPolicy(policy, model)) << name;
      LOOPSERVE_CHECK(unchecked->at(name) == policy) << name;
    }
  }

  ExitPolicy policy;
  policy.criterion = ExitCriterion::kMaxProb;
  policy.threshold = 0.9;
  absl::StatusOr<std::string> merged = MergeNamedPolicy(text, "fuzz", policy);
  if (merged.ok()) {
    LOOPSERVE_CHECK(unchecked.ok()) << "merged into a file that does not parse";
    absl::StatusOr<std::map<std::string, ExitPolicy>> reread = ParseNamedPolicies(*merged);
    LOOPSERVE_CHECK_OK(reread.status());
    LOOPSERVE_CHECK(reread->at("fuzz") == policy);
    LOOPSERVE_CHECK_EQ(reread->size(), unchecked->size() + (unchecked->count("fuzz") ? 0 : 1));
  }
  return 0;
}

// Free-generation check of calibrated policies: the prompts' greedy
// continuations served with a policy (exited tokens' K/V as kv_fill says)
// against the same continuations at full depth — what teacher-forced
// scoring cannot show.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"

namespace loopserve::cli {

struct FreeGenerationResult {
  ExitPolicy policy;
  double identical_share = 0;  // sequences equal to full depth, token for token
  double token_agreement = 0;  // positions equal before the first divergence, / all
  double compute_saved = 0;    // over the generated tokens' forwards and prompts
};

// Greedy, `tokens` tokens per prompt, all prompts in one batch per policy.
absl::StatusOr<std::vector<FreeGenerationResult>> CheckFreeGeneration(
    Engine& engine, const std::vector<std::vector<int32_t>>& prompts,
    const std::vector<ExitPolicy>& policies, int tokens);

std::string FreeGenerationTable(const std::vector<FreeGenerationResult>& results, int tokens);

}  // namespace loopserve::cli

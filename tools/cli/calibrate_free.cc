#include "tools/cli/calibrate_free.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace loopserve::cli {
namespace {

absl::StatusOr<std::vector<GenerationResult>> RunGreedy(
    Engine& engine, const std::vector<std::vector<int32_t>>& prompts, const ExitPolicy& policy,
    int tokens) {
  std::vector<GenerationRequest> requests;
  for (const std::vector<int32_t>& prompt : prompts) {
    GenerationRequest r;
    // Leave room for the continuation inside the model's context.
    const int64_t room = engine.config().max_position_embeddings - tokens;
    r.prompt.assign(prompt.begin(), prompt.begin() + std::min<int64_t>(prompt.size(), room));
    r.max_tokens = tokens;
    r.policy = policy;
    requests.push_back(std::move(r));
  }
  return engine.Generate(std::move(requests));
}

}  // namespace

absl::StatusOr<std::vector<FreeGenerationResult>> CheckFreeGeneration(
    Engine& engine, const std::vector<std::vector<int32_t>>& prompts,
    const std::vector<ExitPolicy>& policies, int tokens) {
  absl::StatusOr<std::vector<GenerationResult>> full =
      RunGreedy(engine, prompts, ExitPolicy{}, tokens);
  if (!full.ok()) return full.status();
  std::vector<FreeGenerationResult> out;
  for (const ExitPolicy& policy : policies) {
    absl::StatusOr<std::vector<GenerationResult>> got = RunGreedy(engine, prompts, policy, tokens);
    if (!got.ok()) return got.status();
    FreeGenerationResult r;
    r.policy = policy;
    int64_t identical = 0, agreeing = 0, total = 0;
    Usage usage;
    for (size_t i = 0; i < got->size(); ++i) {
      const std::vector<GeneratedToken>& a = (*full)[i].tokens;
      const std::vector<GeneratedToken>& b = (*got)[i].tokens;
      size_t same = 0;
      while (same < a.size() && same < b.size() && a[same].token == b[same].token) ++same;
      identical += same == a.size() && a.size() == b.size();
      agreeing += static_cast<int64_t>(same);
      total += static_cast<int64_t>(a.size());
      usage.Add((*got)[i].usage);
    }
    r.identical_share = got->empty() ? 0 : static_cast<double>(identical) / got->size();
    r.token_agreement = total == 0 ? 0 : static_cast<double>(agreeing) / total;
    r.compute_saved = usage.ComputeSaved();
    out.push_back(r);
  }
  return out;
}

std::string FreeGenerationTable(const std::vector<FreeGenerationResult>& results, int tokens) {
  std::string out = absl::StrCat("free generation (served, greedy, ", tokens,
                                 " tokens per prompt) vs full depth:\n");
  absl::StrAppendFormat(&out, "  %-44s %10s %16s %14s\n", "policy", "identical", "agree<diverge",
                        "saved");
  for (const FreeGenerationResult& r : results) {
    const std::string name = absl::StrFormat(
        "%s:%.4g min%d max%d %s", ExitCriterionName(r.policy.criterion), r.policy.threshold,
        r.policy.min_loops, r.policy.max_loops, KvFillName(r.policy.kv_fill));
    absl::StrAppendFormat(&out, "  %-44s %9.1f%% %15.1f%% %13.1f%%\n", name,
                          100 * r.identical_share, 100 * r.token_agreement, 100 * r.compute_saved);
  }
  return out;
}

}  // namespace loopserve::cli

// Shared pieces of loopserve-cli's commands: flags that every command takes,
// loading the model into an engine, parsing id lists and exit policies.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/exit_policy.h"
#include "engine/tokenizer.h"

ABSL_DECLARE_FLAG(std::string, model);
ABSL_DECLARE_FLAG(std::string, prompt_ids);
ABSL_DECLARE_FLAG(std::string, prompt);
ABSL_DECLARE_FLAG(int, threads);
ABSL_DECLARE_FLAG(std::string, policy);
ABSL_DECLARE_FLAG(int, min_loops);
ABSL_DECLARE_FLAG(int, max_loops);
ABSL_DECLARE_FLAG(std::string, kv_fill);
ABSL_DECLARE_FLAG(bool, json);

namespace loopserve::cli {

absl::StatusOr<std::unique_ptr<Engine>> LoadEngine();
// The model directory's tokenizer.json, or null when it has none.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer();
// --prompt (text, needs a tokenizer; BOS prepended when it has one) or
// --prompt_ids.
absl::StatusOr<std::vector<int32_t>> PromptFromFlags(const Tokenizer* tokenizer);
// "1,2,3" or "1 2 3" -> ids.
absl::StatusOr<std::vector<int32_t>> ParseIds(const std::string& text);
// --policy "criterion[:threshold]" plus --min_loops/--max_loops/--kv_fill.
absl::StatusOr<ExitPolicy> PolicyFromFlags(const ModelConfig& config);

int RunGenerate();
int RunScore();
int RunCalibrate();

}  // namespace loopserve::cli

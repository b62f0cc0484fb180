#include "tools/cli/cli_common.h"

#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/model_weights.h"

ABSL_FLAG(std::string, model, "models/demo", "checkpoint directory");
ABSL_FLAG(std::string, prompt_ids, "", "prompt token ids, comma- or space-separated");
ABSL_FLAG(std::string, prompt, "", "prompt text (needs tokenizer.json in the model directory)");
ABSL_FLAG(int, threads, 0, "CPU threads (0 = all cores)");
ABSL_FLAG(std::string, policy, "never",
          "exit policy as criterion[:threshold], e.g. max_prob:0.9, entropy:0.5, never");
ABSL_FLAG(int, min_loops, 1, "earliest loop count a token may exit after");
ABSL_FLAG(int, max_loops, 0, "loop count at which every token stops (0 = num_loops)");
ABSL_FLAG(std::string, kv_fill, "reuse", "K/V of skipped loops: reuse | propagate");
ABSL_FLAG(bool, json, false, "print JSON instead of a table");

namespace loopserve::cli {

absl::StatusOr<std::unique_ptr<Engine>> LoadEngine() {
  absl::StatusOr<std::shared_ptr<const LoadedModel>> model =
      LoadModel(absl::GetFlag(FLAGS_model));
  if (!model.ok()) return model.status();
  for (const std::string& field : (*model)->config.unknown_fields) {
    std::fprintf(stderr, "warning: config.json: unknown field `%s` ignored\n", field.c_str());
  }
  EngineOptions options;
  options.num_threads = absl::GetFlag(FLAGS_threads);
  return Engine::Create(*model, options);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer() {
  const std::string path = absl::GetFlag(FLAGS_model) + "/tokenizer.json";
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::Load(path);
  if (absl::IsNotFound(tokenizer.status())) return std::unique_ptr<Tokenizer>();
  return tokenizer;
}

absl::StatusOr<std::vector<int32_t>> PromptFromFlags(const Tokenizer* tokenizer) {
  const std::string text = absl::GetFlag(FLAGS_prompt);
  if (text.empty()) return ParseIds(absl::GetFlag(FLAGS_prompt_ids));
  if (!absl::GetFlag(FLAGS_prompt_ids).empty()) {
    return absl::InvalidArgumentError("give either --prompt or --prompt_ids, not both");
  }
  if (tokenizer == nullptr) {
    return absl::FailedPreconditionError(
        "--prompt needs a tokenizer.json in the model directory; use --prompt_ids");
  }
  return tokenizer->Encode(text, /*add_bos=*/true);
}

absl::StatusOr<std::vector<int32_t>> ParseIds(const std::string& text) {
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(text, absl::ByAnyChar(", "), absl::SkipEmpty())) {
    int32_t id = 0;
    if (!absl::SimpleAtoi(part, &id)) {
      return absl::InvalidArgumentError(absl::StrCat("not a token id: `", part, "`"));
    }
    ids.push_back(id);
  }
  if (ids.empty()) return absl::InvalidArgumentError("no prompt given (--prompt or --prompt_ids)");
  return ids;
}

absl::StatusOr<ExitPolicy> PolicyFromFlags(const ModelConfig& config) {
  ExitPolicy policy;
  const std::string spec = absl::GetFlag(FLAGS_policy);
  std::vector<std::string> parts = absl::StrSplit(spec, absl::MaxSplits(':', 1));
  absl::StatusOr<ExitCriterion> criterion = ParseExitCriterion(parts[0]);
  if (!criterion.ok()) return criterion.status();
  policy.criterion = *criterion;
  if (parts.size() > 1 && !absl::SimpleAtod(parts[1], &policy.threshold)) {
    return absl::InvalidArgumentError(absl::StrCat("--policy: bad threshold `", parts[1], "`"));
  }
  policy.min_loops = absl::GetFlag(FLAGS_min_loops);
  policy.max_loops = absl::GetFlag(FLAGS_max_loops);
  absl::StatusOr<KvFill> fill = ParseKvFill(absl::GetFlag(FLAGS_kv_fill));
  if (!fill.ok()) return fill.status();
  policy.kv_fill = *fill;
  if (absl::Status s = ValidateExitPolicy(policy, config); !s.ok()) return s;
  return policy;
}

}  // namespace loopserve::cli

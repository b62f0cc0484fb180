#include "server/request_builder.h"

#include "absl/strings/str_cat.h"

namespace loopserve {
namespace {

absl::Status ApplySampling(const v1::SamplingParams& proto, const RequestLimits& limits,
                           SamplingParams& params) {
  if (proto.logprobs() > limits.max_logprobs) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.logprobs is ", proto.logprobs(),
                                                   "; this server allows at most ",
                                                   limits.max_logprobs));
  }
  if (proto.has_temperature()) params.temperature = proto.temperature();
  if (proto.has_top_k()) params.top_k = proto.top_k();
  if (proto.has_top_p()) params.top_p = proto.top_p();
  if (proto.has_seed()) params.seed = proto.seed();
  if (proto.logprobs() != 0) params.logprobs = proto.logprobs();
  if (absl::Status s = ValidateSamplingParams(params); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("sampling: ", s.message()));
  }
  return absl::OkStatus();
}

bool HasAnyOverride(const v1::ExitOverride& o) {
  return o.has_criterion() || o.has_threshold() || o.has_min_loops() || o.has_max_loops() ||
         o.has_kv_fill();
}

absl::Status ApplyOverride(const v1::ExitOverride& o, const ModelConfig& config,
                           ExitPolicy& policy) {
  if (o.has_criterion()) {
    absl::StatusOr<ExitCriterion> c = ParseExitCriterion(o.criterion());
    if (!c.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("exit_override.criterion: ", c.status().message()));
    policy.criterion = *c;
  }
  if (o.has_threshold()) policy.threshold = o.threshold();
  if (o.has_min_loops()) policy.min_loops = o.min_loops();
  if (o.has_max_loops()) policy.max_loops = o.max_loops();
  if (o.has_kv_fill()) {
    absl::StatusOr<KvFill> f = ParseKvFill(o.kv_fill());
    if (!f.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("exit_override.kv_fill: ", f.status().message()));
    }
    policy.kv_fill = *f;
  }
  if (absl::Status s = ValidateExitPolicy(policy, config); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("exit_override: ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status ApplyPrompt(const v1::GenerateRequest& proto, const Tokenizer* tokenizer,
                         std::vector<int32_t>& prompt) {
  switch (proto.prompt_case()) {
    case v1::GenerateRequest::kTokenIds:
      prompt.assign(proto.token_ids().ids().begin(), proto.token_ids().ids().end());
      break;
    case v1::GenerateRequest::kText: {
      if (tokenizer == nullptr) {
        return absl::FailedPreconditionError(
            "text prompt needs a tokenizer, and the model has no tokenizer.json: send token_ids");
      }
      prompt = tokenizer->Encode(proto.text(), /*add_bos=*/true);
      break;
    }
    case v1::GenerateRequest::PROMPT_NOT_SET:
      return absl::InvalidArgumentError("prompt is required: set `text` or `token_ids`");
  }
  if (prompt.empty()) return absl::InvalidArgumentError("prompt is empty");
  return absl::OkStatus();
}

absl::Status CheckStopLimits(const v1::GenerateRequest& proto, const RequestLimits& limits) {
  if (proto.stop_token_ids_size() > limits.max_stop_token_ids) {
    return absl::InvalidArgumentError(
        absl::StrCat("stop_token_ids has ", proto.stop_token_ids_size(),
                     " ids; this server allows at most ", limits.max_stop_token_ids));
  }
  if (proto.stop_size() > limits.max_stop_sequences) {
    return absl::InvalidArgumentError(absl::StrCat("stop has ", proto.stop_size(),
                                                   " sequences; this server allows at most ",
                                                   limits.max_stop_sequences));
  }
  for (int i = 0; i < proto.stop_size(); ++i) {
    const size_t n = proto.stop(i).size();
    if (n == 0 || n > static_cast<size_t>(limits.max_stop_sequence_bytes)) {
      return absl::InvalidArgumentError(absl::StrCat("stop[", i, "] has ", n, " bytes; allowed 1..",
                                                     limits.max_stop_sequence_bytes));
    }
  }
  return absl::OkStatus();
}

absl::Status ApplyStops(const v1::GenerateRequest& proto, const ModelConfig& config,
                        const Tokenizer* tokenizer, std::vector<int32_t>& stop_ids,
                        std::vector<std::string>& stop_strings) {
  for (int i = 0; i < proto.stop_token_ids_size(); ++i) {
    const int32_t id = proto.stop_token_ids(i);
    if (id < 0 || id >= config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "stop_token_ids[", i, "] = ", id, " outside vocabulary [0, ", config.vocab_size, ")"));
    }
    stop_ids.push_back(id);
  }
  if (tokenizer != nullptr && tokenizer->eos_id() >= 0 && tokenizer->eos_id() < config.vocab_size) {
    stop_ids.push_back(tokenizer->eos_id());
  }
  if (proto.stop_size() == 0) return absl::OkStatus();
  if (tokenizer == nullptr) {
    return absl::FailedPreconditionError(
        "stop sequences need a tokenizer, and the model has no tokenizer.json: use "
        "stop_token_ids");
  }
  // Matched on the generated text by the engine (engine/engine.cc); the
  // server trims the returned text at the match (server/generate_call.cc).
  for (int i = 0; i < proto.stop_size(); ++i) stop_strings.push_back(proto.stop(i));
  return absl::OkStatus();
}

}  // namespace

std::string PolicyLabel(const ExitPolicy& policy) {
  std::string label = ExitCriterionName(policy.criterion);
  if (policy.criterion != ExitCriterion::kNever) absl::StrAppend(&label, ":", policy.threshold);
  return label;
}

std::string PolicyLabel(const Deployment& deployment) {
  return deployment.policy_name.empty() ? PolicyLabel(deployment.policy) : deployment.policy_name;
}

absl::StatusOr<BuiltRequest> BuildGenerationRequest(const v1::GenerateRequest& proto,
                                                    const Deployment& deployment,
                                                    const ModelConfig& config,
                                                    const Tokenizer* tokenizer,
                                                    const RequestLimits& limits) {
  BuiltRequest out;
  GenerationRequest& r = out.request;
  // Cheap checks of the raw message first: no tokenizing for a request
  // that is refused anyway.
  if (absl::Status s = CheckStopLimits(proto, limits); !s.ok()) return s;
  if (absl::Status s = ApplyPrompt(proto, tokenizer, r.prompt); !s.ok()) return s;
  const int max_prompt = deployment.limits.max_prompt_tokens;
  if (max_prompt > 0 && static_cast<int64_t>(r.prompt.size()) > max_prompt) {
    return absl::InvalidArgumentError(absl::StrCat("prompt has ", r.prompt.size(),
                                                   " tokens; deployment `", deployment.name,
                                                   "` allows at most ", max_prompt));
  }
  r.max_tokens = proto.has_max_tokens() ? proto.max_tokens() : deployment.default_max_tokens;
  if (r.max_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens must be >= 1, got ", r.max_tokens));
  }
  if (r.max_tokens > deployment.limits.max_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens ", r.max_tokens,
                                                   " exceeds deployment `", deployment.name,
                                                   "` limit of ", deployment.limits.max_tokens));
  }
  int64_t context = config.max_position_embeddings;
  if (limits.max_context_tokens > 0 && limits.max_context_tokens < context) {
    context = limits.max_context_tokens;
  }
  const int64_t total = static_cast<int64_t>(r.prompt.size()) + r.max_tokens;
  if (total > context) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt (", r.prompt.size(), " tokens) + max_tokens (", r.max_tokens,
                     ") = ", total, " tokens exceeds the context limit of ", context, " tokens"));
  }
  if (absl::Status s = ApplyStops(proto, config, tokenizer, r.stop_token_ids, r.stop_strings);
      !s.ok())
    return s;
  r.sampling = deployment.default_sampling;
  if (absl::Status s = ApplySampling(proto.sampling(), limits, r.sampling); !s.ok()) return s;
  r.policy = deployment.policy;
  out.policy_label = PolicyLabel(deployment);
  if (proto.has_exit_override() && HasAnyOverride(proto.exit_override())) {
    if (!deployment.limits.allow_exit_overrides) {
      return absl::PermissionDeniedError(
          absl::StrCat("deployment `", deployment.name,
                       "` does not allow exit overrides (limits.allow_exit_overrides is false)"));
    }
    if (absl::Status s = ApplyOverride(proto.exit_override(), config, r.policy); !s.ok()) return s;
    out.policy_override = true;
    // One label for every override: a client-chosen threshold must not
    // create unbounded metric series.
    out.policy_label = "override";
  }
  return out;
}

}  // namespace loopserve

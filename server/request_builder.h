// Turns a v1 GenerateRequest into the engine's GenerationRequest under a
// deployment: defaults for max_tokens and sampling, the exit override (only
// where the deployment allows it), and the deployment's limits. Every
// refusal is a Status whose code the gRPC edge returns as is.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "engine/deployment.h"
#include "engine/model_config.h"
#include "engine/request.h"
#include "engine/tokenizer.h"
#include "loopserve/v1/loopserve.pb.h"
#include "server/request_limits.h"

namespace loopserve {

struct BuiltRequest {
  GenerationRequest request;
  bool policy_override = false;  // the request brought its own exit policy
  std::string policy_label;      // metrics/log label of the policy it runs
};

// InvalidArgument (empty prompt, max_tokens out of range, prompt over the
// deployment's limit, prompt + max_tokens over the context limit, more or
// longer stop sequences, more stop ids or logprobs than `limits` allow, bad
// sampling or override values, stop ids outside the vocabulary),
// PermissionDenied (override not allowed), FailedPrecondition
// (text or stop strings without a tokenizer).
// `tokenizer` may be null; with one, text prompts get its BOS and its EOS
// ends generation. Token ids inside the vocabulary and the context limit
// are checked by the engine on Submit.
absl::StatusOr<BuiltRequest> BuildGenerationRequest(const v1::GenerateRequest& proto,
                                                    const Deployment& deployment,
                                                    const ModelConfig& config,
                                                    const Tokenizer* tokenizer,
                                                    const RequestLimits& limits = {});

// "never", "max_prob:0.9", or the named policy the deployment runs.
std::string PolicyLabel(const Deployment& deployment);
std::string PolicyLabel(const ExitPolicy& policy);

}  // namespace loopserve

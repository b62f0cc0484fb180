// The soak's workload: a fixed set of greedy prompt templates, and for every
// request index a deterministic spec (kind, deployment, template, fault
// parameters) drawn from the seed, so a failing run can be replayed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loopserve::soak {

// The deployments the soak config (deploy/soak.json) must define.
struct SoakDeployments {
  // Clean load only (no cancels, no deadlines): server metrics must equal
  // the client's counts exactly.
  std::vector<std::string> clean = {"full", "fast"};
  // Carries the faults (cancels, short deadlines, slow readers).
  std::string faulty = "calib";
  // Its exit policy flips live via Admin.SetExitPolicy while it serves.
  std::string live = "live";
  // calib's limits.max_prompt_tokens (a longer prompt is INVALID_ARGUMENT).
  int faulty_max_prompt_tokens = 200;
  // full's limits.max_tokens.
  int max_tokens_limit = 64;
};

struct PromptTemplate {
  std::vector<int32_t> prompt;
  int max_tokens = 0;
  bool long_prompt = false;  // sized to press on the KV pool
};

enum class RequestKind {
  kUnary,          // valid greedy, compared with the reference
  kStream,         // the same over GenerateStream
  kCancelUnary,    // cancelled by the client after a random delay
  kCancelStream,   // cancelled after reading a few messages
  kShortDeadline,  // a deadline of a few ms
  kLive,           // on the live-policy deployment: status and shape only
  kMalformed,      // an invalid request with a fixed expected status
  kGarbage,        // bytes that are not a GenerateRequest
  kBurst,          // a burst of concurrent unary requests (queue limit)
};
const char* KindName(RequestKind kind);

// Ways a request can be invalid; each has one documented status.
enum class MalformedCase {
  kUnknownDeployment,    // NOT_FOUND
  kNoPrompt,             // INVALID_ARGUMENT
  kTokenOutOfVocab,      // INVALID_ARGUMENT
  kNegativeToken,        // INVALID_ARGUMENT
  kZeroMaxTokens,        // INVALID_ARGUMENT
  kMaxTokensOverLimit,   // INVALID_ARGUMENT
  kOverContext,          // INVALID_ARGUMENT (prompt + max_tokens > context)
  kPromptOverLimit,      // INVALID_ARGUMENT (deployment max_prompt_tokens)
  kNegativeTemperature,  // INVALID_ARGUMENT
  kTooManyLogprobs,      // INVALID_ARGUMENT
  kOverrideNotAllowed,   // PERMISSION_DENIED
  kBadOverride,          // INVALID_ARGUMENT
  kStopIdOutOfVocab,     // INVALID_ARGUMENT
  kCount,
};
const char* MalformedName(MalformedCase c);

struct RequestSpec {
  int64_t index = 0;
  RequestKind kind = RequestKind::kUnary;
  bool stream = false;  // for kinds that may go either way
  std::string deployment;
  int template_index = 0;
  MalformedCase malformed = MalformedCase::kNoPrompt;
  int cancel_after_ms = 0;        // kCancelUnary
  int cancel_after_messages = 0;  // kCancelStream
  int deadline_ms = 0;            // kShortDeadline
  int burst_size = 0;             // kBurst
};

struct PlanOptions {
  uint64_t seed = 1;
  int num_templates = 24;
  int64_t vocab_size = 0;
  int context = 0;  // max_position_embeddings
  int burst_size = 24;
  SoakDeployments deployments;
};

class SoakPlan {
 public:
  explicit SoakPlan(const PlanOptions& options);

  const std::vector<PromptTemplate>& templates() const { return templates_; }
  const PlanOptions& options() const { return options_; }
  // Deterministic in (seed, index).
  RequestSpec SpecFor(int64_t index) const;

 private:
  PlanOptions options_;
  std::vector<PromptTemplate> templates_;
};

}  // namespace loopserve::soak

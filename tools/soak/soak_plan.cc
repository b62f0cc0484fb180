#include "tools/soak/soak_plan.h"

#include <algorithm>
#include <random>

namespace loopserve::soak {
namespace {

// First ids are often special tokens (BOS/EOS/PAD); prompts avoid them.
constexpr int32_t kFirstPromptId = 4;

int Uniform(std::mt19937_64& rng, int lo, int hi) {  // [lo, hi]
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

}  // namespace

const char* KindName(RequestKind kind) {
  switch (kind) {
    case RequestKind::kUnary: return "unary";
    case RequestKind::kStream: return "stream";
    case RequestKind::kCancelUnary: return "cancel_unary";
    case RequestKind::kCancelStream: return "cancel_stream";
    case RequestKind::kShortDeadline: return "short_deadline";
    case RequestKind::kLive: return "live_policy";
    case RequestKind::kMalformed: return "malformed";
    case RequestKind::kGarbage: return "garbage_bytes";
    case RequestKind::kBurst: return "burst";
  }
  return "?";
}

const char* MalformedName(MalformedCase c) {
  switch (c) {
    case MalformedCase::kUnknownDeployment: return "unknown_deployment";
    case MalformedCase::kNoPrompt: return "no_prompt";
    case MalformedCase::kTokenOutOfVocab: return "token_out_of_vocab";
    case MalformedCase::kNegativeToken: return "negative_token";
    case MalformedCase::kZeroMaxTokens: return "zero_max_tokens";
    case MalformedCase::kMaxTokensOverLimit: return "max_tokens_over_limit";
    case MalformedCase::kOverContext: return "over_context";
    case MalformedCase::kPromptOverLimit: return "prompt_over_limit";
    case MalformedCase::kNegativeTemperature: return "negative_temperature";
    case MalformedCase::kTooManyLogprobs: return "too_many_logprobs";
    case MalformedCase::kOverrideNotAllowed: return "override_not_allowed";
    case MalformedCase::kBadOverride: return "bad_override";
    case MalformedCase::kStopIdOutOfVocab: return "stop_id_out_of_vocab";
    case MalformedCase::kCount: break;
  }
  return "?";
}

SoakPlan::SoakPlan(const PlanOptions& options) : options_(options) {
  std::mt19937_64 rng(options.seed * 0x9E3779B97F4A7C15ull + 17);
  const int vocab_hi = static_cast<int>(options.vocab_size) - 1;
  for (int t = 0; t < options.num_templates; ++t) {
    PromptTemplate p;
    // One in four is long: a few of them together overfill the small KV
    // pool of the soak config, so the scheduler must preempt.
    p.long_prompt = t % 4 == 3;
    const int length = p.long_prompt ? Uniform(rng, options.context / 2, options.context * 3 / 4)
                                     : Uniform(rng, 4, 40);
    const int room = options.context - length;
    p.max_tokens = std::min({options.deployments.max_tokens_limit, room,
                             p.long_prompt ? Uniform(rng, 24, 56) : Uniform(rng, 4, 40)});
    for (int i = 0; i < length; ++i) p.prompt.push_back(Uniform(rng, kFirstPromptId, vocab_hi));
    templates_.push_back(std::move(p));
  }
}

RequestSpec SoakPlan::SpecFor(int64_t index) const {
  std::mt19937_64 rng(options_.seed * 0x2545F4914F6CDD1Dull + static_cast<uint64_t>(index));
  const SoakDeployments& d = options_.deployments;
  RequestSpec s;
  s.index = index;
  s.template_index = Uniform(rng, 0, static_cast<int>(templates_.size()) - 1);
  s.stream = Uniform(rng, 0, 1) == 1;
  // Every 250th request (from the 125th) is a burst on a clean deployment.
  if (options_.burst_size > 0 && index % 250 == 125) {
    s.kind = RequestKind::kBurst;
    s.deployment = d.clean[static_cast<size_t>(index / 250) % d.clean.size()];
    s.burst_size = options_.burst_size;
    return s;
  }
  const int roll = Uniform(rng, 0, 99);
  auto valid_deployment = [&] {
    const int k = Uniform(rng, 0, static_cast<int>(d.clean.size()));
    return k == static_cast<int>(d.clean.size()) ? d.faulty : d.clean[static_cast<size_t>(k)];
  };
  if (roll < 50) {
    s.kind = s.stream ? RequestKind::kStream : RequestKind::kUnary;
    s.deployment = valid_deployment();
  } else if (roll < 58) {
    s.kind = RequestKind::kCancelUnary;
    s.deployment = d.faulty;
    s.cancel_after_ms = Uniform(rng, 0, 60);
  } else if (roll < 65) {
    s.kind = RequestKind::kCancelStream;
    s.deployment = d.faulty;
    s.cancel_after_messages = Uniform(rng, 0, 4);
  } else if (roll < 73) {
    s.kind = RequestKind::kShortDeadline;
    s.deployment = d.faulty;
    s.deadline_ms = Uniform(rng, 1, 40);
  } else if (roll < 86) {
    s.kind = RequestKind::kLive;
    s.deployment = d.live;
  } else if (roll < 98) {
    s.kind = RequestKind::kMalformed;
    s.malformed = static_cast<MalformedCase>(
        Uniform(rng, 0, static_cast<int>(MalformedCase::kCount) - 1));
    s.deployment = valid_deployment();
    // Cases tied to one deployment's limits.
    if (s.malformed == MalformedCase::kOverrideNotAllowed) s.deployment = d.clean.front();
    if (s.malformed == MalformedCase::kBadOverride) s.deployment = d.clean.back();
    if (s.malformed == MalformedCase::kPromptOverLimit) s.deployment = d.faulty;
    if (s.malformed == MalformedCase::kUnknownDeployment) s.deployment = "no-such-deployment";
  } else {
    s.kind = RequestKind::kGarbage;
    s.deployment = d.clean.front();
  }
  return s;
}

}  // namespace loopserve::soak

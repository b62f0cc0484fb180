// Next-token sampling from one row of logits: greedy, temperature, top-k,
// top-p, with a per-sequence deterministic RNG and the model's logprobs.
#pragma once

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace loopserve {

inline constexpr int kMaxLogprobs = 20;

struct SamplingParams {
  float temperature = 0;  // 0 = greedy
  int top_k = 0;          // 0 = off
  float top_p = 1;        // 1 = off
  uint64_t seed = 0;
  int logprobs = 0;  // how many top alternatives to return, [0, kMaxLogprobs]
};

// InvalidArgument naming the field: temperature finite and ≥ 0, top_k ≥ 0,
// top_p in (0, 1], logprobs in [0, kMaxLogprobs].
absl::Status ValidateSamplingParams(const SamplingParams& params);

struct SampledToken {
  int32_t token = 0;
  // Log-probability of `token` under softmax of the unmodified logits (the
  // model's distribution at temperature 1, before top-k/top-p): what a client
  // scoring text expects, independent of how the token was chosen.
  float logprob = 0;
  // Top `logprobs` tokens by the same log-probability, descending; ties go to
  // the lower id.
  std::vector<std::pair<int32_t, float>> top_logprobs;
};

// One per sequence: its RNG advances only when a token is drawn (greedy does
// not consume randomness), so a sequence replays identically from its seed.
class Sampler {
 public:
  // `params` must pass ValidateSamplingParams.
  explicit Sampler(const SamplingParams& params);

  // logits (V) -> one token. V ≥ 1.
  SampledToken Sample(const float* logits, int64_t vocab);

  const SamplingParams& params() const { return params_; }

 private:
  // Uniform in [0, 1) from the top 53 bits of one 64-bit draw: the same on
  // every platform, unlike std::uniform_real_distribution.
  double NextUniform();
  int32_t SampleFull(const float* logits, int64_t vocab, float max_logit);
  int32_t SampleTruncated(const float* logits, int64_t vocab, float max_logit);

  SamplingParams params_;
  std::mt19937_64 rng_;
  // Scratch reused across calls so a 150k-token vocabulary does not allocate
  // per token.
  std::vector<float> weights_;
  std::vector<int32_t> order_;
};

}  // namespace loopserve

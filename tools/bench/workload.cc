#include "tools/bench/workload.h"

#include <algorithm>
#include <cmath>

namespace loopserve::bench {

Workload::Workload(const BenchConfig& config, int64_t vocab, int max_prompt_tokens,
                   int max_tokens_limit)
    : config_(config),
      vocab_(vocab),
      max_prompt_tokens_(max_prompt_tokens),
      max_tokens_limit_(max_tokens_limit) {}

// fixed: the mean; uniform: [1, 2·mean − 1] (mean preserved); exponential:
// 1 + Exp(mean − 1) rounded (mean ≈ preserved, long tail).
int Workload::DrawLength(const LengthSpec& spec, int limit, std::mt19937_64& rng) {
  double value = spec.mean;
  switch (spec.dist) {
    case LengthDist::kFixed:
      break;
    case LengthDist::kUniform: {
      const int64_t hi = std::max<int64_t>(1, std::llround(2 * spec.mean - 1));
      value = static_cast<double>(std::uniform_int_distribution<int64_t>(1, hi)(rng));
      break;
    }
    case LengthDist::kExponential:
      value =
          spec.mean > 1 ? 1 + std::exponential_distribution<double>(1 / (spec.mean - 1))(rng) : 1;
      break;
  }
  int64_t n = std::max<int64_t>(1, std::llround(value));
  if (limit > 0) n = std::min<int64_t>(n, limit);
  return static_cast<int>(std::min<int64_t>(n, 1 << 30));
}

RequestSpec Workload::Make(int64_t index) const {
  std::seed_seq seq{static_cast<uint32_t>(config_.seed), static_cast<uint32_t>(config_.seed >> 32),
                    static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32)};
  std::mt19937_64 rng(seq);
  RequestSpec spec;
  spec.index = index;
  const int prompt_len = DrawLength(config_.prompt_len, max_prompt_tokens_, rng);
  spec.max_tokens = DrawLength(config_.max_tokens, max_tokens_limit_, rng);
  std::uniform_int_distribution<int64_t> token(0, std::max<int64_t>(1, vocab_) - 1);
  spec.prompt.reserve(static_cast<size_t>(prompt_len));
  for (int i = 0; i < prompt_len; ++i) spec.prompt.push_back(static_cast<int32_t>(token(rng)));
  return spec;
}

Workload::Arrivals Workload::MakeArrivals() const {
  return Arrivals(config_.rate, config_.seed ^ 0x9e3779b97f4a7c15ULL);
}

}  // namespace loopserve::bench

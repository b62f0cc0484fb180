// What a caller asks the engine for and what it gets back, independent of
// any transport: prompt ids, sampling, exit policy, limits; generated tokens
// with their exit loops, finish reason and compute usage.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/exit_policy.h"
#include "engine/sampler.h"

namespace loopserve {

struct GenerationRequest {
  std::vector<int32_t> prompt;
  int max_tokens = 16;
  SamplingParams sampling;
  ExitPolicy policy;
  std::vector<int32_t> stop_token_ids;
  // Stop when the generated text (token bytes joined) contains one of these;
  // needs the engine to have a tokenizer. The token that completes the
  // string is the last one returned; callers trim the text.
  std::vector<std::string> stop_strings;
};

inline constexpr int kMaxStopStrings = 16;
inline constexpr size_t kMaxStopStringBytes = 256;

enum class FinishReason : uint8_t { kNone, kLength, kStop, kCancelled, kError };
const char* FinishReasonName(FinishReason reason);

struct GeneratedToken {
  int32_t token = 0;
  int exit_loop = 0;  // 0-based loop of the forward that produced it
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top_logprobs;
};

// Compute usage of a sequence over every token it ran (prompt and decode).
struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t loops_executed = 0;  // recurrent-block passes actually run
  int64_t loops_full = 0;      // what full depth would have run
  double flops_done = 0;
  double flops_full = 0;
  // MODEL_SPEC: 1 − Σ flops_done / Σ flops_full; negative when exit checks
  // cost more than the loops they skip.
  double ComputeSaved() const { return flops_full > 0 ? 1.0 - flops_done / flops_full : 0.0; }
  void Add(const Usage& other);
};

struct GenerationResult {
  int64_t id = 0;
  std::vector<GeneratedToken> tokens;
  FinishReason finish_reason = FinishReason::kNone;
  std::string error;  // when finish_reason == kError
  Usage usage;
};

// Tokens produced by one engine step for one sequence.
struct SequenceUpdate {
  int64_t id = 0;
  std::vector<GeneratedToken> new_tokens;
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;
  Usage usage;  // cumulative
};

}  // namespace loopserve

// The engine's state of one request: its tokens so far, how many have K/V
// in the pool, which of them run full depth, its sampler and its usage.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/request.h"
#include "engine/sampler.h"

namespace loopserve {

struct Sequence {
  Sequence(int64_t id, GenerationRequest req)
      : id(id), request(std::move(req)), sampler(request.sampling) {
    tokens = request.prompt;
    full_depth_end = static_cast<int64_t>(tokens.size());
    usage.prompt_tokens = static_cast<int64_t>(tokens.size());
  }

  int64_t id;
  GenerationRequest request;
  Sampler sampler;
  std::vector<int32_t> tokens;  // prompt, then generated ids
  int64_t num_computed = 0;     // tokens whose K/V are in the pool
  // Positions below this are recomputed without exit checks: the prompt at
  // full depth and, after a preemption, generated tokens replayed to the
  // loop they first exited at (ReplayExitLoop). Later positions run under
  // the exit policy.
  int64_t full_depth_end = 0;
  std::vector<GeneratedToken> generated;
  std::string generated_bytes;  // token bytes of `generated`, for stop strings
  Usage usage;
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;

  int64_t num_tokens() const { return static_cast<int64_t>(tokens.size()); }
  // Tokens still to run before the next sample.
  int64_t pending() const { return num_tokens() - num_computed; }
  bool decoding() const { return num_computed >= full_depth_end && pending() == 1; }
  // Tokens a prefill chunk may cover: up to full_depth_end while below it
  // (a replayed sequence's last token then decodes on its own).
  int64_t prefill_pending() const {
    return num_computed < full_depth_end ? full_depth_end - num_computed : pending();
  }
  // The loop position `p` (a generated token fed back) exited at when first
  // computed, or -1 for a prompt position. The forward at p produced
  // generated[p - prompt_tokens + 1].
  int ReplayExitLoop(int64_t p) const {
    const int64_t k = p - usage.prompt_tokens + 1;
    if (p < usage.prompt_tokens || k >= static_cast<int64_t>(generated.size())) return -1;
    return generated[k].exit_loop;
  }
};

}  // namespace loopserve

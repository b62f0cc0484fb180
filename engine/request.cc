#include "engine/request.h"

namespace loopserve {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone: return "none";
    case FinishReason::kLength: return "length";
    case FinishReason::kStop: return "stop";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
  }
  return "unknown";
}

void Usage::Add(const Usage& other) {
  prompt_tokens += other.prompt_tokens;
  completion_tokens += other.completion_tokens;
  loops_executed += other.loops_executed;
  loops_full += other.loops_full;
  flops_done += other.flops_done;
  flops_full += other.flops_full;
}

}  // namespace loopserve

#include "server/token_bucket.h"

#include <algorithm>
#include <cmath>

namespace loopserve {

TokenBucket::TokenBucket(double rate_per_second, double burst, Clock::time_point now)
    : rate_(rate_per_second), burst_(std::max(1.0, burst)), tokens_(burst_), last_(now) {}

void TokenBucket::Refill(Clock::time_point now) {
  if (now <= last_) return;
  const double seconds = std::chrono::duration<double>(now - last_).count();
  tokens_ = std::min(burst_, tokens_ + seconds * rate_);
  last_ = now;
}

TokenBucket::Take TokenBucket::TryTake(Clock::time_point now) {
  Refill(now);
  Take result;
  if (tokens_ >= 1.0) {
    tokens_ -= 1.0;
    result.taken = true;
    return result;
  }
  // Round up so a client that waits exactly this long finds a token.
  const double wait_ms = std::ceil((1.0 - tokens_) / rate_ * 1e3);
  result.retry_after = std::chrono::milliseconds(static_cast<int64_t>(std::max(1.0, wait_ms)));
  return result;
}

void TokenBucket::Reconfigure(double rate_per_second, double burst, Clock::time_point now) {
  Refill(now);
  rate_ = rate_per_second;
  burst_ = std::max(1.0, burst);
  tokens_ = std::min(tokens_, burst_);
}

}  // namespace loopserve

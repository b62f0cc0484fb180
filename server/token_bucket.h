// A token bucket (requests per second with a burst) for per-key rate
// limits. Time is passed in by the caller, so tests drive it with a fake
// clock and the limiter itself never reads a clock or sleeps. Not
// thread-safe: the owner (AccessControl) holds a lock around it.
#pragma once

#include <chrono>

namespace loopserve {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  // `rate_per_second` > 0 tokens refill per second up to `burst` >= 1; the
  // bucket starts full at `now`.
  TokenBucket(double rate_per_second, double burst, Clock::time_point now);

  struct Take {
    bool taken = false;
    // When not taken: how long until one token will be there.
    std::chrono::milliseconds retry_after{0};
  };
  // Takes one token if one is there at `now`. A `now` earlier than a
  // previous call counts as no time passed (no refill, no debt).
  Take TryTake(Clock::time_point now);

  double tokens() const { return tokens_; }

  // New limits from a config reload: the tokens already earned stay (capped
  // at the new burst), so a reload neither refills a drained bucket nor
  // empties a full one. `now` settles the refill at the old rate first.
  void Reconfigure(double rate_per_second, double burst, Clock::time_point now);

 private:
  void Refill(Clock::time_point now);

  double rate_;
  double burst_;
  double tokens_;
  Clock::time_point last_;
};

}  // namespace loopserve

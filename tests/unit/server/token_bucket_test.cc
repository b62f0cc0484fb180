// TokenBucket with a fake clock: burst, refill rate, retry hints, clock
// going backwards. No sleeps.
#include "server/token_bucket.h"

#include "gtest/gtest.h"

namespace loopserve {
namespace {

using std::chrono::milliseconds;
using Clock = TokenBucket::Clock;

TEST(TokenBucketTest, BurstThenRefusesWithTimeToNextToken) {
  const Clock::time_point t0{};
  TokenBucket bucket(/*rate_per_second=*/2, /*burst=*/3, t0);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(bucket.TryTake(t0).taken) << i;
  TokenBucket::Take refused = bucket.TryTake(t0);
  EXPECT_FALSE(refused.taken);
  EXPECT_EQ(refused.retry_after, milliseconds(500));  // 1 token at 2/s
  // 200 ms later 0.4 tokens are back: 300 ms to go.
  refused = bucket.TryTake(t0 + milliseconds(200));
  EXPECT_FALSE(refused.taken);
  EXPECT_EQ(refused.retry_after, milliseconds(300));
  // Waiting exactly the hint finds a token.
  EXPECT_TRUE(bucket.TryTake(t0 + milliseconds(500)).taken);
  EXPECT_FALSE(bucket.TryTake(t0 + milliseconds(500)).taken);
}

TEST(TokenBucketTest, ReconfigureKeepsEarnedTokensUpToTheNewBurst) {
  const Clock::time_point t0{};
  TokenBucket bucket(/*rate_per_second=*/1, /*burst=*/4, t0);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(bucket.TryTake(t0).taken);
  // 1.5 s at the old rate earns 1.5 tokens; the new rate applies after.
  bucket.Reconfigure(/*rate_per_second=*/10, /*burst=*/8, t0 + milliseconds(1500));
  EXPECT_DOUBLE_EQ(bucket.tokens(), 1.5);
  EXPECT_TRUE(bucket.TryTake(t0 + milliseconds(1500)).taken);
  EXPECT_FALSE(bucket.TryTake(t0 + milliseconds(1500)).taken);
  EXPECT_TRUE(bucket.TryTake(t0 + milliseconds(1600)).taken);  // 0.5 + 0.1 s * 10/s
  // A smaller burst caps what is there.
  bucket.Reconfigure(10, 2, t0 + std::chrono::seconds(60));
  EXPECT_DOUBLE_EQ(bucket.tokens(), 2);
}

TEST(TokenBucketTest, RefillStopsAtBurst) {
  const Clock::time_point t0{};
  TokenBucket bucket(10, 2, t0);
  EXPECT_TRUE(bucket.TryTake(t0).taken);
  EXPECT_TRUE(bucket.TryTake(t0).taken);
  // An hour idle refills to the burst, not to 36000 tokens.
  const Clock::time_point later = t0 + std::chrono::hours(1);
  EXPECT_TRUE(bucket.TryTake(later).taken);
  EXPECT_TRUE(bucket.TryTake(later).taken);
  EXPECT_FALSE(bucket.TryTake(later).taken);
}

TEST(TokenBucketTest, SustainedRateMatchesConfiguredRate) {
  const Clock::time_point t0{};
  TokenBucket bucket(5, 1, t0);
  int taken = 0;
  // Try every 10 ms for 10 s: 1 (initial) + 5/s * 10 s.
  for (int ms = 0; ms <= 10000; ms += 10) taken += bucket.TryTake(t0 + milliseconds(ms)).taken;
  EXPECT_EQ(taken, 51);
}

TEST(TokenBucketTest, ClockGoingBackwardsNeitherRefillsNorBorrows) {
  const Clock::time_point t0 = Clock::time_point{} + std::chrono::seconds(10);
  TokenBucket bucket(1, 1, t0);
  EXPECT_TRUE(bucket.TryTake(t0).taken);
  EXPECT_FALSE(bucket.TryTake(t0 - std::chrono::seconds(5)).taken);
  EXPECT_TRUE(bucket.TryTake(t0 + std::chrono::seconds(1)).taken);
}

TEST(TokenBucketTest, SlowRateGivesLongHintNeverZero) {
  const Clock::time_point t0{};
  TokenBucket bucket(0.1, 1, t0);  // one request per 10 s
  EXPECT_TRUE(bucket.TryTake(t0).taken);
  TokenBucket::Take refused = bucket.TryTake(t0);
  EXPECT_EQ(refused.retry_after, milliseconds(10000));
  refused = bucket.TryTake(t0 + milliseconds(9999) + std::chrono::microseconds(999));
  EXPECT_FALSE(refused.taken);
  EXPECT_GE(refused.retry_after, milliseconds(1));
}

}  // namespace
}  // namespace loopserve

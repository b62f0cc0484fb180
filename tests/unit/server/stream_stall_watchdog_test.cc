// StreamStallWatchdog on a fake clock: a write waiting `timeout` cancels its
// stream once; finished writes, idle streams and unwatched streams never
// are; a cancel that unwatches its own stream on the same thread (as gRPC's
// TryCancel can run OnDone inline) does not deadlock; the real thread
// cancels a stalled stream by itself.
#include "server/stream_stall_watchdog.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "gtest/gtest.h"

namespace loopserve {
namespace {

using std::chrono::milliseconds;
using Clock = StreamStallWatchdog::Clock;

struct FakeClock {
  std::atomic<Clock::rep> ticks{0};
  StreamStallWatchdog::NowFunction Function() {
    return [this] { return Clock::time_point(Clock::duration(ticks.load())); };
  }
  Clock::time_point now() const { return Clock::time_point(Clock::duration(ticks.load())); }
  void Advance(milliseconds d) { ticks += std::chrono::duration_cast<Clock::duration>(d).count(); }
};

// A period so long the thread never scans during a test: CheckNow drives it.
constexpr milliseconds kNoThreadScan{std::chrono::hours(1)};

TEST(StreamStallWatchdogTest, CancelsAWriteThatWaitedTheTimeoutOnce) {
  FakeClock clock;
  clock.Advance(milliseconds(1));  // tick 0 means "no write waiting"
  StreamStallWatchdog watchdog(milliseconds(1000), kNoThreadScan, clock.Function());
  int stalled_cancels = 0;
  int reading_cancels = 0;
  auto stalled = watchdog.Watch([&] { ++stalled_cancels; });
  auto reading = watchdog.Watch([&] { ++reading_cancels; });
  auto idle = watchdog.Watch([] { FAIL() << "an idle stream has no write to wait on"; });
  EXPECT_EQ(watchdog.watched(), 3);

  stalled->WriteStarted(clock.now());
  reading->WriteStarted(clock.now());
  clock.Advance(milliseconds(999));
  EXPECT_EQ(watchdog.CheckNow(), 0);
  reading->WriteDone();  // the client read just in time
  clock.Advance(milliseconds(1));
  EXPECT_EQ(watchdog.CheckNow(), 1);
  EXPECT_EQ(stalled_cancels, 1);
  EXPECT_EQ(reading_cancels, 0);
  clock.Advance(milliseconds(5000));
  EXPECT_EQ(watchdog.CheckNow(), 0);  // at most once per stream
  EXPECT_EQ(stalled_cancels, 1);
  EXPECT_EQ(watchdog.cancelled(), 1);

  // A new write on the reading stream is timed from its own start.
  reading->WriteStarted(clock.now());
  clock.Advance(milliseconds(500));
  EXPECT_EQ(watchdog.CheckNow(), 0);
  for (auto* s : {&stalled, &reading, &idle}) watchdog.Unwatch(*s);
  EXPECT_EQ(watchdog.watched(), 0);
}

TEST(StreamStallWatchdogTest, UnwatchedStreamsAreNeverCancelled) {
  FakeClock clock;
  clock.Advance(milliseconds(1));
  StreamStallWatchdog watchdog(milliseconds(10), kNoThreadScan, clock.Function());
  auto stream = watchdog.Watch([] { FAIL() << "cancelled after Unwatch"; });
  stream->WriteStarted(clock.now());
  watchdog.Unwatch(stream);
  clock.Advance(milliseconds(100));
  EXPECT_EQ(watchdog.CheckNow(), 0);
}

TEST(StreamStallWatchdogTest, CancelMayUnwatchItsOwnStreamInline) {
  FakeClock clock;
  clock.Advance(milliseconds(1));
  StreamStallWatchdog watchdog(milliseconds(10), kNoThreadScan, clock.Function());
  std::shared_ptr<StreamStallWatchdog::Stream> stream;
  bool cancelled = false;
  stream = watchdog.Watch([&] {
    cancelled = true;
    watchdog.Unwatch(stream);  // what OnDone does when TryCancel runs it inline
  });
  stream->WriteStarted(clock.now());
  clock.Advance(milliseconds(10));
  EXPECT_EQ(watchdog.CheckNow(), 1);
  EXPECT_TRUE(cancelled);
  EXPECT_EQ(watchdog.watched(), 0);
}

TEST(StreamStallWatchdogTest, OffWatchesNothing) {
  StreamStallWatchdog watchdog(milliseconds(0), milliseconds(1));
  EXPECT_FALSE(watchdog.enabled());
  auto stream = watchdog.Watch([] { FAIL(); });
  stream->WriteStarted(Clock::now() - std::chrono::hours(1));
  EXPECT_EQ(watchdog.watched(), 0);
  EXPECT_EQ(watchdog.CheckNow(), 0);
  watchdog.Unwatch(stream);
}

TEST(StreamStallWatchdogTest, TheThreadCancelsByItself) {
  StreamStallWatchdog watchdog(milliseconds(20), milliseconds(5));
  std::atomic<bool> cancelled{false};
  auto stream = watchdog.Watch([&] { cancelled = true; });
  stream->WriteStarted(Clock::now());
  const auto until = Clock::now() + std::chrono::seconds(30);
  while (!cancelled && Clock::now() < until) std::this_thread::sleep_for(milliseconds(5));
  EXPECT_TRUE(cancelled);
  watchdog.Unwatch(stream);
}

}  // namespace
}  // namespace loopserve

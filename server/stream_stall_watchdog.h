// Ends streams whose client stopped reading. A GenerateStream write that the
// client does not take (full HTTP/2 window, client stuck or malicious) would
// otherwise hold the call, its queued output and a gRPC slot until the
// deadline, which a client may not set. The reactor marks each write's start
// and end; a thread wakes every `period` and cancels any stream whose write
// has waited `timeout` (the `limits.stream_write_timeout_seconds` config).
// No gRPC here: the reactor passes in how to cancel (TryCancel), so the
// timing logic is tested on its own.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace loopserve {

class StreamStallWatchdog {
 public:
  using Clock = std::chrono::steady_clock;
  using NowFunction = std::function<Clock::time_point()>;

  // One watched stream, owned by the reactor (as a shared_ptr the watchdog
  // also holds while it may call `cancel`).
  class Stream {
   public:
    // Lock-free: called on the engine and gRPC threads around each write.
    void WriteStarted(Clock::time_point now) { write_started_ns_.store(Ns(now)); }
    void WriteDone() { write_started_ns_.store(0); }

   private:
    friend class StreamStallWatchdog;
    static int64_t Ns(Clock::time_point t) {
      return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
    }
    std::atomic<int64_t> write_started_ns_{0};  // 0 = no write waiting
    // Recursive: `cancel` (TryCancel) may run the reactor's OnDone inline on
    // the same thread, which calls Unwatch while this is held.
    std::recursive_mutex mu_;
    bool alive_ = true;       // guarded by mu_; false once Unwatch ran
    bool cancelled_ = false;  // guarded by mu_
    std::function<void()> cancel_;
  };

  // `timeout` <= 0: off (Watch returns streams that are never checked and
  // no thread runs). `now` defaults to the steady clock.
  StreamStallWatchdog(std::chrono::milliseconds timeout, std::chrono::milliseconds period,
                      NowFunction now = nullptr);
  ~StreamStallWatchdog();  // stops the thread; streams still watched are left alone
  StreamStallWatchdog(const StreamStallWatchdog&) = delete;
  StreamStallWatchdog& operator=(const StreamStallWatchdog&) = delete;

  bool enabled() const { return timeout_.count() > 0; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  // Starts watching; `cancel` runs at most once, on the watchdog thread,
  // never after Unwatch returned.
  std::shared_ptr<Stream> Watch(std::function<void()> cancel);
  // Stops watching (the reactor's OnDone, before it is deleted). Waits for
  // a `cancel` of this stream running on another thread.
  void Unwatch(const std::shared_ptr<Stream>& stream);

  // One scan (the thread's work; tests call it directly): cancels every
  // stream whose write has waited `timeout`; returns how many it cancelled.
  int CheckNow();
  // Streams cancelled so far, and streams watched now.
  int64_t cancelled() const;
  int64_t watched() const;

 private:
  void Run();

  const std::chrono::milliseconds timeout_;
  const std::chrono::milliseconds period_;
  NowFunction now_;
  mutable absl::Mutex mu_;
  std::map<Stream*, std::shared_ptr<Stream>> streams_ ABSL_GUARDED_BY(mu_);
  int64_t cancelled_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace loopserve

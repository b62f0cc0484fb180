#include "server/stream_stall_watchdog.h"

#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace loopserve {

StreamStallWatchdog::StreamStallWatchdog(std::chrono::milliseconds timeout,
                                         std::chrono::milliseconds period, NowFunction now)
    : timeout_(timeout), period_(period), now_(std::move(now)) {
  if (now_ == nullptr) now_ = [] { return Clock::now(); };
  if (enabled()) thread_ = std::thread([this] { Run(); });
}

StreamStallWatchdog::~StreamStallWatchdog() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void StreamStallWatchdog::Run() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::FromChrono(period_))) return;
    }
    CheckNow();
  }
}

std::shared_ptr<StreamStallWatchdog::Stream> StreamStallWatchdog::Watch(
    std::function<void()> cancel) {
  auto stream = std::make_shared<Stream>();
  stream->cancel_ = std::move(cancel);
  if (enabled()) {
    absl::MutexLock lock(&mu_);
    streams_[stream.get()] = stream;
  }
  return stream;
}

void StreamStallWatchdog::Unwatch(const std::shared_ptr<Stream>& stream) {
  if (stream == nullptr) return;
  {
    // Waits out a cancel running on the watchdog thread; re-entered when
    // that cancel is what ended the call on this very thread.
    std::lock_guard<std::recursive_mutex> lock(stream->mu_);
    stream->alive_ = false;
  }
  absl::MutexLock lock(&mu_);
  streams_.erase(stream.get());
}

int StreamStallWatchdog::CheckNow() {
  if (!enabled()) return 0;
  const int64_t limit_ns = std::chrono::nanoseconds(timeout_).count();
  auto stalled_at = [&](const Stream& s, int64_t now_ns) {
    const int64_t started = s.write_started_ns_.load();
    return started != 0 && now_ns - started >= limit_ns;
  };
  int64_t now_ns = Stream::Ns(now_());
  std::vector<std::shared_ptr<Stream>> stalled;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [ptr, stream] : streams_) {
      if (stalled_at(*stream, now_ns)) stalled.push_back(stream);
    }
  }
  // Cancel outside mu_: TryCancel can run the reactor's OnWriteDone and
  // OnDone inline, and OnDone calls Unwatch.
  int cancelled = 0;
  for (const std::shared_ptr<Stream>& stream : stalled) {
    std::lock_guard<std::recursive_mutex> lock(stream->mu_);
    now_ns = Stream::Ns(now_());
    // Still stalled (a write may have finished since the scan), still alive.
    if (!stream->alive_ || stream->cancelled_ || !stalled_at(*stream, now_ns)) continue;
    stream->cancelled_ = true;
    ++cancelled;
    // The function stays owned by `stream` (kept alive by `stalled`) even if
    // the call it ends unwatches itself meanwhile.
    stream->cancel_();
  }
  if (cancelled > 0) {
    absl::MutexLock lock(&mu_);
    cancelled_ += cancelled;
  }
  return cancelled;
}

int64_t StreamStallWatchdog::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

int64_t StreamStallWatchdog::watched() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(streams_.size());
}

}  // namespace loopserve

// Runs an Engine on its own thread for concurrent callers (the gRPC server):
// Submit/Cancel/UpdatePolicy are thread-safe and never wait for a step; the
// engine thread applies them between steps and reports every request's
// progress through its callback. No gRPC here.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/engine.h"

namespace loopserve {

using Clock = std::chrono::steady_clock;

// Latencies of one request, in seconds (0 until known).
struct RequestTiming {
  double queue_seconds = 0;        // submit -> first scheduled step
  double first_token_seconds = 0;  // submit -> first generated token (TTFT)
  double per_token_seconds = 0;    // mean gap between later tokens (TPOT)
  double total_seconds = 0;        // submit -> finished
};

// What a request's callback receives: new tokens, and on the last event the
// finish reason, the final status (OK, or CANCELLED / DEADLINE_EXCEEDED /
// the engine's error), usage and timing.
struct RequestEvent {
  std::vector<GeneratedToken> tokens;
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;
  absl::Status status;
  Usage usage;
  RequestTiming timing;
};
// Called on the engine thread: must return quickly and never block on I/O.
using RequestCallback = std::function<void(const RequestEvent&)>;

struct SubmitOptions {
  std::string deployment;        // for UpdatePolicy and metrics
  bool policy_override = false;  // the request brought its own policy
  Clock::time_point deadline = Clock::time_point::max();
};

// Engine state after a step, for gauges.
struct StepStats {
  int64_t running = 0;
  int64_t waiting = 0;
  int64_t batch_tokens = 0;
  int64_t kv_blocks_used = 0;
  int64_t kv_blocks_total = 0;
  int64_t preemptions_total = 0;
};

struct EngineLoopOptions {
  int max_queued_requests = 256;  // not yet admitted to the engine
};

class EngineLoop {
 public:
  EngineLoop(std::unique_ptr<Engine> engine, const EngineLoopOptions& options);
  ~EngineLoop();  // stops the thread; unfinished requests end CANCELLED

  // Validates (InvalidArgument / ResourceExhausted), applies the queue limit
  // (ResourceExhausted) and refuses while draining (Unavailable). On success
  // the callback will see exactly one finished event.
  absl::StatusOr<int64_t> Submit(GenerationRequest request, const SubmitOptions& options,
                                 RequestCallback callback);
  void Cancel(int64_t id);
  // Requests of `deployment` without their own policy switch to `policy`
  // from their next step.
  void UpdatePolicy(const std::string& deployment, const ExitPolicy& policy);
  // Stops admitting; waits up to `grace` for in-flight requests, then
  // cancels the rest. Returns once nothing is in flight and every final
  // callback has returned.
  void Drain(std::chrono::milliseconds grace);
  bool draining() const { return draining_.load(); }
  int64_t in_flight() const { return in_flight_.load(); }

  // Called on the engine thread after every step.
  void SetStepObserver(std::function<void(const StepStats&)> observer);
  const Engine& engine() const { return *engine_; }

 private:
  struct Pending;
  struct Active;
  void Run();
  void ApplyInbox();
  void ExpireDeadlines();
  void StepOnce();
  void FinishActive(int64_t id, RequestEvent& event);

  std::unique_ptr<Engine> engine_;
  EngineLoopOptions options_;
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> in_flight_{0};
  // Final callbacks still running: in_flight_ drops before the callback (see
  // FinishActive), so Drain also waits for this to reach zero.
  std::atomic<int64_t> finishing_{0};
  std::atomic<int64_t> next_id_{1};

  absl::Mutex mu_;
  std::vector<Pending> inbox_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> cancels_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, ExitPolicy>> policy_updates_ ABSL_GUARDED_BY(mu_);
  int64_t queued_ ABSL_GUARDED_BY(mu_) = 0;  // submitted, not yet in the engine
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void(const StepStats&)> observer_ ABSL_GUARDED_BY(mu_);

  std::map<int64_t, Active> active_;  // engine thread only
  std::thread thread_;
};

}  // namespace loopserve

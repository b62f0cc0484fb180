#include "engine/engine_loop.h"

#include "absl/strings/str_cat.h"

namespace loopserve {

struct EngineLoop::Pending {
  int64_t id;
  GenerationRequest request;
  SubmitOptions options;
  RequestCallback callback;
  Clock::time_point submitted;
};

struct EngineLoop::Active {
  SubmitOptions options;
  RequestCallback callback;
  Clock::time_point submitted;
  Clock::time_point first_step{};
  Clock::time_point first_token{};
  Clock::time_point last_token{};
  int64_t tokens = 0;
  bool scheduled = false;
  absl::Status cancel_status;  // why it is being cancelled, if it is

  RequestTiming Timing(Clock::time_point now) const {
    auto secs = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
    RequestTiming t;
    t.queue_seconds = scheduled ? secs(first_step - submitted) : secs(now - submitted);
    t.first_token_seconds = tokens > 0 ? secs(first_token - submitted) : 0;
    t.per_token_seconds = tokens > 1 ? secs(last_token - first_token) / (tokens - 1) : 0;
    t.total_seconds = secs(now - submitted);
    return t;
  }
};

EngineLoop::EngineLoop(std::unique_ptr<Engine> engine, const EngineLoopOptions& options)
    : engine_(std::move(engine)), options_(options) {
  thread_ = std::thread([this] { Run(); });
}

EngineLoop::~EngineLoop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

absl::StatusOr<int64_t> EngineLoop::Submit(GenerationRequest request, const SubmitOptions& options,
                                           RequestCallback callback) {
  if (draining_.load()) return absl::UnavailableError("server is draining");
  if (absl::Status s = engine_->ValidateRequest(request); !s.ok()) return s;
  const int64_t id = next_id_.fetch_add(1);
  absl::MutexLock lock(&mu_);
  if (queued_ >= options_.max_queued_requests) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request queue is full (", options_.max_queued_requests, " waiting); retry later"));
  }
  ++queued_;
  in_flight_.fetch_add(1);
  inbox_.push_back(Pending{id, std::move(request), options, std::move(callback), Clock::now()});
  return id;
}

void EngineLoop::Cancel(int64_t id) {
  absl::MutexLock lock(&mu_);
  cancels_.push_back(id);
}

void EngineLoop::UpdatePolicy(const std::string& deployment, const ExitPolicy& policy) {
  absl::MutexLock lock(&mu_);
  policy_updates_.emplace_back(deployment, policy);
}

void EngineLoop::SetStepObserver(std::function<void(const StepStats&)> observer) {
  absl::MutexLock lock(&mu_);
  observer_ = std::move(observer);
}

void EngineLoop::Drain(std::chrono::milliseconds grace) {
  draining_.store(true);
  const Clock::time_point until = Clock::now() + grace;
  while (in_flight_.load() > 0 && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (in_flight_.load() > 0) {
    absl::MutexLock lock(&mu_);
    // Cancel everything still in flight; the engine thread reports each.
    cancels_.push_back(-1);
  }
  while (in_flight_.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  // A request leaves in_flight_ just before its final callback runs; the
  // caller may tear down what that callback touches once Drain returns.
  while (finishing_.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void EngineLoop::FinishActive(int64_t id, RequestEvent& event) {
  auto it = active_.find(id);
  if (it == active_.end()) return;
  event.finished = true;
  event.timing = it->second.Timing(Clock::now());
  // Leave the books before the callback runs: a caller woken by its final
  // event must already see the request gone (in_flight, Drain).
  RequestCallback callback = std::move(it->second.callback);
  active_.erase(it);
  finishing_.fetch_add(1);  // before in_flight_ drops: Drain never sees neither
  in_flight_.fetch_sub(1);
  callback(event);
  finishing_.fetch_sub(1);
}

void EngineLoop::ApplyInbox() {
  std::vector<Pending> inbox;
  std::vector<int64_t> cancels;
  std::vector<std::pair<std::string, ExitPolicy>> updates;
  {
    absl::MutexLock lock(&mu_);
    inbox.swap(inbox_);
    cancels.swap(cancels_);
    updates.swap(policy_updates_);
    queued_ -= static_cast<int64_t>(inbox.size());
  }
  for (Pending& p : inbox) {
    absl::StatusOr<int64_t> id = engine_->AddWithId(std::move(p.request), p.id);
    Active a;
    a.options = p.options;
    a.callback = std::move(p.callback);
    a.submitted = p.submitted;
    active_.emplace(p.id, std::move(a));
    if (!id.ok()) {
      RequestEvent event;
      event.finish_reason = FinishReason::kError;
      event.status = id.status();
      FinishActive(p.id, event);
    }
  }
  for (int64_t id : cancels) {
    if (id == -1) {  // drain deadline: everything
      for (auto& [active_id, a] : active_) {
        a.cancel_status = absl::CancelledError("server shutting down");
        engine_->Cancel(active_id);
      }
      continue;
    }
    auto it = active_.find(id);
    if (it == active_.end()) continue;
    it->second.cancel_status = absl::CancelledError("cancelled by the client");
    engine_->Cancel(id);
  }
  for (const auto& [deployment, policy] : updates) {
    for (auto& [id, a] : active_) {
      if (a.options.deployment == deployment && !a.options.policy_override) {
        engine_->SetPolicy(id, policy).IgnoreError();  // finished ones are gone
      }
    }
  }
}

void EngineLoop::ExpireDeadlines() {
  const Clock::time_point now = Clock::now();
  for (auto& [id, a] : active_) {
    if (a.options.deadline <= now && a.cancel_status.ok()) {
      a.cancel_status = absl::DeadlineExceededError("request deadline exceeded");
      engine_->Cancel(id);
    }
  }
}

void EngineLoop::StepOnce() {
  absl::StatusOr<std::vector<SequenceUpdate>> updates = engine_->Step();
  const Clock::time_point now = Clock::now();
  if (!updates.ok()) {
    // A failed step is a bug, not bad input: fail every request in flight
    // rather than spin on it, and keep the loop alive for new ones.
    std::vector<int64_t> ids;
    for (const auto& [id, a] : active_) ids.push_back(id);
    for (int64_t id : ids) {
      engine_->Cancel(id);
      RequestEvent event;
      event.finish_reason = FinishReason::kError;
      event.status =
          absl::InternalError(absl::StrCat("engine step failed: ", updates.status().message()));
      FinishActive(id, event);
    }
    engine_->Step().IgnoreError();  // drains the cancellations
    return;
  }
  for (SequenceUpdate& u : *updates) {
    auto it = active_.find(u.id);
    if (it == active_.end()) continue;
    Active& a = it->second;
    if (!a.scheduled) {
      a.scheduled = true;
      a.first_step = now;
    }
    if (!u.new_tokens.empty()) {
      if (a.tokens == 0) a.first_token = now;
      a.last_token = now;
      a.tokens += static_cast<int64_t>(u.new_tokens.size());
    }
    RequestEvent event;
    event.tokens = std::move(u.new_tokens);
    event.usage = u.usage;
    if (u.finished) {
      event.finish_reason = u.finish_reason;
      event.status =
          u.finish_reason == FinishReason::kCancelled ? a.cancel_status : absl::OkStatus();
      if (u.finish_reason == FinishReason::kCancelled && event.status.ok()) {
        event.status = absl::CancelledError("cancelled");
      }
      FinishActive(u.id, event);
    } else {
      event.timing = a.Timing(now);
      a.callback(event);
    }
  }
}

void EngineLoop::Run() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stop_ || !inbox_.empty() || !cancels_.empty() || !policy_updates_.empty();
      };
      if (!engine_->HasWork()) {
        mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(50));
      }
      if (stop_) break;
    }
    ApplyInbox();
    ExpireDeadlines();
    if (engine_->HasWork()) StepOnce();
    std::function<void(const StepStats&)> observer;
    {
      absl::MutexLock lock(&mu_);
      observer = observer_;
    }
    if (observer) {
      StepStats stats;
      stats.running = engine_->scheduler().num_running();
      stats.waiting = engine_->scheduler().num_waiting();
      stats.batch_tokens = engine_->last_batch_tokens();
      stats.kv_blocks_used = engine_->kv_cache().blocks().NumUsedBlocks();
      stats.kv_blocks_total = engine_->kv_cache().num_blocks();
      stats.preemptions_total = engine_->scheduler().num_preemptions();
      observer(stats);
    }
  }
  // Shutting down: end whatever is left.
  ApplyInbox();
  std::vector<int64_t> ids;
  for (const auto& [id, a] : active_) ids.push_back(id);
  for (int64_t id : ids) {
    engine_->Cancel(id);
    RequestEvent event;
    event.finish_reason = FinishReason::kCancelled;
    event.status = absl::CancelledError("server stopped");
    FinishActive(id, event);
  }
}

}  // namespace loopserve

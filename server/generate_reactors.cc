#include "server/generate_reactors.h"

#include <chrono>
#include <deque>
#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "server/generate_call.h"
#include "server/log.h"
#include "server/proto_convert.h"

namespace loopserve {
namespace {

class GenerateReactor final : public grpc::ServerUnaryReactor {
 public:
  GenerateReactor(ServingState* state, grpc::CallbackServerContext* context,
                  const v1::GenerateRequest* request, v1::GenerateResponse* response)
      : call_(state, context, *request), response_(response) {
    response_->set_request_id(call_.request_id());
    response_->set_deployment(call_.deployment());
    absl::Status s = call_.Start([this](const RequestEvent& e) { OnEvent(e); });
    if (!s.ok()) Finish(ToGrpcStatus(s));
  }

  void OnCancel() override { call_.Cancel(); }
  void OnDone() override { delete this; }

 private:
  // Engine thread. Nothing touches response_ concurrently: gRPC reads it
  // only after Finish.
  void OnEvent(const RequestEvent& event) {
    call_.AppendTokens(event, response_->mutable_tokens());
    for (const GeneratedToken& t : event.tokens) ids_.push_back(t.token);
    if (!event.finished) {
      call_.Observe(event);
      return;
    }
    response_->set_finish_reason(ToProto(event.finish_reason));
    ToProto(event.usage, response_->mutable_usage());
    if (call_.tokenizer() != nullptr) {
      // The tokens' texts: whole characters, cut at a matched stop string.
      std::string text;
      for (const v1::GeneratedToken& t : response_->tokens()) text += t.text();
      response_->set_text(text);
    }
    const absl::Status status = call_.Complete(event);
    Finish(ToGrpcStatus(status));  // last use of `this`: OnDone may follow
  }

  GenerateCall call_;
  v1::GenerateResponse* response_;
  std::vector<int32_t> ids_;
};

class GenerateStreamReactor final : public grpc::ServerWriteReactor<v1::GenerateStreamResponse> {
 public:
  GenerateStreamReactor(ServingState* state, grpc::CallbackServerContext* context,
                        const v1::GenerateRequest* request)
      : call_(state, context, *request), metrics_(state->metrics) {
    if (state->stall_watchdog != nullptr && state->stall_watchdog->enabled()) {
      watchdog_ = state->stall_watchdog;
      // Runs on the watchdog thread, never after OnDone's Unwatch returned.
      watch_ = watchdog_->Watch([this, context] { OnStalled(context); });
    }
    absl::Status s = call_.Start([this](const RequestEvent& e) { OnEvent(e); });
    if (!s.ok()) Finish(ToGrpcStatus(s));
  }

  void OnCancel() override { call_.Cancel(); }
  void OnDone() override {
    if (watchdog_ != nullptr) watchdog_->Unwatch(watch_);
    delete this;
  }

  void OnWriteDone(bool ok) override {
    if (watch_ != nullptr) watch_->WriteDone();
    bool write = false;
    bool finish = false;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (!ok) {
        // The client is gone; OnCancel ends the request in the engine.
        write_failed_ = true;
        queue_.clear();
      }
      write = NextWriteLocked();
      finish = !write && NextFinishLocked(status);
    }
    if (write) Write();
    if (finish) Finish(status);
  }

 private:
  void Write() {
    if (watch_ != nullptr) watch_->WriteStarted(StreamStallWatchdog::Clock::now());
    StartWrite(&in_flight_msg_);
  }

  // The client left a write unread for the configured time: end the call
  // (the client sees CANCELLED); what it has not read is dropped.
  void OnStalled(grpc::CallbackServerContext* context) {
    LogWarning("stream cancelled: the client left a write unread",
               {{"request_id", call_.request_id()},
                {"deployment", call_.deployment()},
                {"stream_write_timeout_seconds",
                 std::chrono::duration<double>(watchdog_->timeout()).count()}});
    if (metrics_ != nullptr) metrics_->RecordStreamWriteTimeout();
    context->TryCancel();
  }

  // Engine thread: queue, never wait for the network.
  void OnEvent(const RequestEvent& event) {
    const bool last = event.finished;
    grpc::Status final_status;
    if (last) {
      final_status = ToGrpcStatus(call_.Complete(event));
    } else {
      call_.Observe(event);
    }
    bool write = false;
    bool finish = false;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (!write_failed_ && (!event.tokens.empty() || (last && final_status.ok()))) {
        // Merge into the newest queued message when the client reads slower
        // than the engine generates: bounded memory, fewer writes.
        if (queue_.empty()) {
          queue_.emplace_back();
          queue_.back().set_request_id(call_.request_id());
        }
        v1::GenerateStreamResponse& msg = queue_.back();
        call_.AppendTokens(event, msg.mutable_tokens());
        if (last) {
          msg.set_finish_reason(ToProto(event.finish_reason));
          ToProto(event.usage, msg.mutable_usage());
        }
      }
      if (last) {
        finished_ = true;
        final_status_ = final_status;
      }
      write = NextWriteLocked();
      finish = !write && NextFinishLocked(status);
    }
    if (write) Write();
    if (finish) Finish(status);  // last use of `this`: OnDone may follow
  }

  bool NextWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_in_flight_ || queue_.empty()) return false;
    in_flight_msg_ = std::move(queue_.front());
    queue_.pop_front();
    write_in_flight_ = true;
    return true;
  }

  bool NextFinishLocked(grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!finished_ || finish_called_ || write_in_flight_ || !queue_.empty()) return false;
    finish_called_ = true;
    status = final_status_;
    return true;
  }

  GenerateCall call_;
  ServerMetrics* metrics_;                         // null when metrics are off
  StreamStallWatchdog* watchdog_ = nullptr;        // null: no write timeout
  std::shared_ptr<StreamStallWatchdog::Stream> watch_;
  absl::Mutex mu_;
  std::deque<v1::GenerateStreamResponse> queue_ ABSL_GUARDED_BY(mu_);
  // The message being written; only replaced when no write is in flight.
  v1::GenerateStreamResponse in_flight_msg_;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerUnaryReactor* StartGenerate(ServingState* state, grpc::CallbackServerContext* context,
                                        const v1::GenerateRequest* request,
                                        v1::GenerateResponse* response) {
  return new GenerateReactor(state, context, request, response);
}

grpc::ServerWriteReactor<v1::GenerateStreamResponse>* StartGenerateStream(
    ServingState* state, grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  return new GenerateStreamReactor(state, context, request);
}

}  // namespace loopserve

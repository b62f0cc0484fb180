// One Generate / GenerateStream call from admission to its last event,
// shared by the unary and the streaming reactor: resolves the deployment,
// builds and submits the engine request, forwards client cancellation, and
// when the request ends maps its status, writes the log line and records
// metrics. Transport writes stay in the reactors.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/engine_loop.h"
#include "engine/streaming_decoder.h"
#include "grpcpp/server_context.h"
#include "loopserve/v1/loopserve.pb.h"
#include "server/serving_state.h"

namespace loopserve {

class GenerateCall {
 public:
  GenerateCall(ServingState* state, grpc::CallbackServerContext* context,
               const v1::GenerateRequest& proto);

  // Validates and submits; `callback` then sees every engine event of the
  // request on the engine thread. A refusal is returned (already logged and
  // counted) for the RPC to finish with.
  absl::Status Start(RequestCallback callback);
  // The client went away (reactor OnCancel): frees the request's KV at the
  // next engine step. Safe from any thread, before or after Start returns.
  void Cancel();
  // Every event, on the engine thread (remembers exit loops for metrics).
  void Observe(const RequestEvent& event);
  // The event's tokens as protos appended to `out`, each with its text when
  // a tokenizer is loaded (whole UTF-8 characters only; a held-back tail
  // goes to a later token, the rest to the last one). Engine thread.
  void AppendTokens(const RequestEvent& event,
                    google::protobuf::RepeatedPtrField<v1::GeneratedToken>* out);
  // The final event: logs, records metrics, returns the RPC's status
  // (DEADLINE_EXCEEDED when a cancellation came from the deadline).
  absl::Status Complete(const RequestEvent& event);

  const std::string& request_id() const { return request_id_; }
  const std::string& deployment() const { return deployment_; }
  const Tokenizer* tokenizer() const { return state_->tokenizer; }

 private:
  ServingState* state_;
  const v1::GenerateRequest& proto_;
  Clock::time_point deadline_ = Clock::time_point::max();
  std::string request_id_;
  std::string deployment_;
  std::string policy_label_;
  int64_t prompt_tokens_ = 0;
  std::vector<int> exit_loops_;
  // Text released so far, holding back a tail that could begin a stop
  // string and cutting at the first match (final: release everything).
  std::string ReleaseText(bool final);

  std::optional<StreamingDecoder> decoder_;  // with a tokenizer
  std::vector<std::string> stops_;           // the request's stop strings
  std::string text_;                         // decoded text of all tokens
  size_t released_ = 0;                      // bytes of text_ sent
  bool stopped_ = false;                     // a stop string was matched
  std::atomic<int64_t> engine_id_{0};
  std::atomic<bool> cancel_requested_{false};
  // The API key's concurrency slot (server/access_control): freed with the call.
  CallLease lease_;
};

}  // namespace loopserve

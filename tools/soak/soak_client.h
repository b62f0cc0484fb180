// Sends the soak's requests over gRPC and records what came back: unary and
// streaming greedy requests, client cancels (by timer or after a few stream
// messages), short deadlines, malformed requests, undecodable bytes, and
// bursts of concurrent requests. Thread-safe: one client serves all workers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "grpcpp/channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "loopserve/v1/loopserve.grpc.pb.h"
#include "tools/soak/soak_plan.h"

namespace loopserve::soak {

// What one RPC ended with, as the client saw it.
struct Outcome {
  RequestSpec spec;        // a burst's members carry kind kBurst and their own template
  int code = 0;            // grpc::StatusCode
  std::string message;     // the status message
  std::vector<int32_t> tokens;  // generated ids received (streams: concatenated)
  int64_t usage_prompt_tokens = -1;
  int64_t usage_completion_tokens = -1;
  int64_t usage_loops_full_depth = -1;
  int finish_reason = 0;   // v1::FinishReason
  std::string shape_error;  // a protocol problem in an OK reply (stream framing, usage)
  double seconds = 0;
};

class SoakClient {
 public:
  SoakClient(std::shared_ptr<grpc::Channel> channel, const SoakPlan* plan);

  // Sends `spec` (a burst sends burst_size requests at once).
  std::vector<Outcome> Run(const RequestSpec& spec);

  // The valid greedy request of a template on a deployment.
  v1::GenerateRequest ValidRequest(const RequestSpec& spec) const;
  // Unary or streaming, with a deadline `timeout_ms` from now.
  Outcome Unary(const RequestSpec& spec, const v1::GenerateRequest& request, int timeout_ms);
  Outcome Stream(const RequestSpec& spec, const v1::GenerateRequest& request, int timeout_ms,
                 int cancel_after_messages);
  // The two halves of Stream: start the call, then read it to its end,
  // cancelling after `cancel_after_messages` messages (-1 = never) and
  // notifying `first_message` (optional) once one arrived or the call ended.
  std::unique_ptr<grpc::ClientReader<v1::GenerateStreamResponse>> StartStream(
      const v1::GenerateRequest& request, grpc::ClientContext* ctx);
  Outcome ReadStream(const RequestSpec& spec, grpc::ClientContext* ctx,
                     grpc::ClientReader<v1::GenerateStreamResponse>* reader,
                     int cancel_after_messages, absl::Notification* first_message);

  absl::StatusOr<v1::ModelInfoResponse> ModelInfo();
  absl::StatusOr<v1::ListDeploymentsResponse> ListDeployments();
  absl::Status SetExitPolicy(const std::string& deployment, const v1::ExitPolicy& policy);
  absl::StatusOr<v1::ExitPolicy> GetExitPolicy(const std::string& deployment);

 private:
  Outcome CancelUnary(const RequestSpec& spec);
  Outcome Malformed(const RequestSpec& spec);
  Outcome Garbage(const RequestSpec& spec);
  std::vector<Outcome> Burst(const RequestSpec& spec);

  const SoakPlan* plan_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::LoopServe::Stub> stub_;
  std::unique_ptr<v1::Admin::Stub> admin_;
  std::unique_ptr<grpc::GenericStub> generic_;
};

// Fills an Outcome's tokens/usage from a unary reply and checks its shape.
void ReadUnaryReply(const v1::GenerateResponse& reply, Outcome& out);
// Copies the usage of a final message into `out`.
void ReadUsage(const v1::Usage& usage, Outcome& out);
// True when the reply's usage shows forwards beyond prompt + tokens - 1:
// the scheduler preempted the request and recomputed its tokens.
bool WasRecomputed(const Outcome& out, int num_loops);

}  // namespace loopserve::soak

// One gRPC client of loopserve-bench: sends a request (unary or streaming)
// and times it from the client's side. Thread-safe (gRPC stubs are).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "loopserve/v1/loopserve.grpc.pb.h"
#include "tools/bench/bench_config.h"
#include "tools/bench/workload.h"

namespace loopserve::bench {

// What the server is (for prompt ids and length limits).
struct ServerInfo {
  int64_t vocab_size = 0;
  int num_loops = 0;
  std::string backend;
  std::string deployment;  // resolved name
  std::string policy;      // the deployment's policy, e.g. "max_prob:0.9"
  int max_prompt_tokens = 0;
  int max_tokens_limit = 0;
};

struct RequestResult {
  int code = 0;  // grpc::StatusCode
  std::string message;
  double e2e_s = 0;
  double ttft_s = -1;  // streaming only: first message with a token
  double tpot_s = -1;  // streaming only, >= 2 tokens: (last − first token) / (tokens − 1)
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t token_loops = 0;  // Σ loops over generated tokens
  int64_t loops_executed = 0;
  int64_t loops_full_depth = 0;
  double flops_done = 0;
  double flops_full_depth = 0;
  int finish_reason = 0;  // v1::FinishReason
};

class BenchClient {
 public:
  explicit BenchClient(const BenchConfig& config);

  // ModelInfo + ListDeployments; fails when the server is unreachable or the
  // deployment is unknown.
  absl::StatusOr<ServerInfo> FetchServerInfo();
  RequestResult Send(const RequestSpec& spec);

 private:
  v1::GenerateRequest BuildRequest(const RequestSpec& spec) const;
  RequestResult SendUnary(const v1::GenerateRequest& request);
  RequestResult SendStream(const v1::GenerateRequest& request);

  BenchConfig config_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::LoopServe::Stub> stub_;
};

}  // namespace loopserve::bench

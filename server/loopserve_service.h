// loopserve.v1.LoopServe over the gRPC callback API: Generate and
// GenerateStream (server/generate_reactors), Tokenize/Detokenize (need a
// tokenizer), ListDeployments and ModelInfo.
#pragma once

#include "loopserve/v1/loopserve.grpc.pb.h"
#include "server/serving_state.h"

namespace loopserve {

class LoopServeService final : public v1::LoopServe::CallbackService {
 public:
  explicit LoopServeService(ServingState* state) : state_(state) {}

  grpc::ServerUnaryReactor* Generate(grpc::CallbackServerContext* context,
                                     const v1::GenerateRequest* request,
                                     v1::GenerateResponse* response) override;
  grpc::ServerWriteReactor<v1::GenerateStreamResponse>* GenerateStream(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;
  grpc::ServerUnaryReactor* ListDeployments(grpc::CallbackServerContext* context,
                                            const v1::ListDeploymentsRequest* request,
                                            v1::ListDeploymentsResponse* response) override;
  grpc::ServerUnaryReactor* ModelInfo(grpc::CallbackServerContext* context,
                                      const v1::ModelInfoRequest* request,
                                      v1::ModelInfoResponse* response) override;

 private:
  ServingState* state_;
};

}  // namespace loopserve

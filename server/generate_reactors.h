// gRPC callback reactors of LoopServe.Generate (unary) and
// LoopServe.GenerateStream (server streaming). Engine events arrive on the
// engine thread and never block it: the unary reactor accumulates and
// finishes on the last event; the streaming reactor queues messages under a
// mutex and keeps at most one write in flight (OnWriteDone continues).
// Each reactor deletes itself in OnDone, which gRPC runs only after Finish,
// which runs only after the engine's last event for the request.
#pragma once

#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"
#include "loopserve/v1/loopserve.pb.h"
#include "server/serving_state.h"

namespace loopserve {

grpc::ServerUnaryReactor* StartGenerate(ServingState* state, grpc::CallbackServerContext* context,
                                        const v1::GenerateRequest* request,
                                        v1::GenerateResponse* response);

grpc::ServerWriteReactor<v1::GenerateStreamResponse>* StartGenerateStream(
    ServingState* state, grpc::CallbackServerContext* context, const v1::GenerateRequest* request);

}  // namespace loopserve

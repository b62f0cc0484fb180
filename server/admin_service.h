// loopserve.v1.Admin: a deployment's exit policy read and changed live
// (validated by the registry, pushed into the engine's running requests),
// and Drain (the Server does the work off the gRPC threads).
#pragma once

#include <cstdint>
#include <functional>

#include "loopserve/v1/loopserve.grpc.pb.h"
#include "server/serving_state.h"

namespace loopserve {

// Starts a drain with `grace_seconds` and calls `done(cancelled)` from
// another thread once nothing is in flight.
using DrainFunction =
    std::function<void(double grace_seconds, std::function<void(int64_t cancelled)> done)>;

class AdminService final : public v1::Admin::CallbackService {
 public:
  AdminService(ServingState* state, DrainFunction drain)
      : state_(state), drain_(std::move(drain)) {}

  grpc::ServerUnaryReactor* GetExitPolicy(grpc::CallbackServerContext* context,
                                          const v1::GetExitPolicyRequest* request,
                                          v1::ExitPolicy* response) override;
  grpc::ServerUnaryReactor* SetExitPolicy(grpc::CallbackServerContext* context,
                                          const v1::SetExitPolicyRequest* request,
                                          v1::ExitPolicy* response) override;
  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* context,
                                  const v1::DrainRequest* request,
                                  v1::DrainResponse* response) override;

 private:
  ServingState* state_;
  DrainFunction drain_;
};

}  // namespace loopserve

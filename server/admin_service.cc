#include "server/admin_service.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/exit_policy.h"
#include "nlohmann/json.hpp"
#include "server/call_auth.h"
#include "server/log.h"
#include "server/proto_convert.h"
#include "server/request_builder.h"

namespace loopserve {
namespace {

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context, const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

// Admin calls need a key with `admin: true` (when keys are configured).
absl::Status AdmitAdmin(ServingState& state, grpc::CallbackServerContext* context,
                        std::string_view method) {
  return AdmitCall(state, context, CallKind::kAdmin, "", method).status();
}

std::string DeploymentName(const ServingState& state, const std::string& requested) {
  return requested.empty() ? state.default_deployment : requested;
}

}  // namespace

grpc::ServerUnaryReactor* AdminService::GetExitPolicy(grpc::CallbackServerContext* context,
                                                      const v1::GetExitPolicyRequest* request,
                                                      v1::ExitPolicy* response) {
  if (absl::Status s = AdmitAdmin(*state_, context, "GetExitPolicy"); !s.ok()) {
    return Done(context, RefusalStatus(context, s));
  }
  absl::StatusOr<Deployment> d =
      state_->registry->Get(DeploymentName(*state_, request->deployment()));
  if (!d.ok()) return Done(context, ToGrpcStatus(d.status()));
  ToProto(d->policy, response);
  return Done(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* AdminService::SetExitPolicy(grpc::CallbackServerContext* context,
                                                      const v1::SetExitPolicyRequest* request,
                                                      v1::ExitPolicy* response) {
  if (absl::Status s = AdmitAdmin(*state_, context, "SetExitPolicy"); !s.ok()) {
    return Done(context, RefusalStatus(context, s));
  }
  const std::string name = DeploymentName(*state_, request->deployment());
  if (!request->has_exit_policy()) {
    return Done(context,
                grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "exit_policy is required"));
  }
  absl::StatusOr<ExitPolicy> policy = FromProto(request->exit_policy());
  if (!policy.ok()) return Done(context, ToGrpcStatus(policy.status()));
  absl::StatusOr<Deployment> updated;
  {
    // Ordered against submissions: see ServingState::policy_mu.
    absl::WriterMutexLock lock(&state_->policy_mu);
    updated = state_->registry->SetPolicy(name, *policy);
    if (updated.ok()) state_->loop->UpdatePolicy(name, updated->policy);
  }
  if (!updated.ok()) {
    absl::Status s = updated.status();
    if (absl::IsInvalidArgument(s)) {
      s = absl::InvalidArgumentError(absl::StrCat("exit_policy: ", s.message()));
    }
    return Done(context, ToGrpcStatus(s));
  }
  LogInfo("exit policy changed", {{"deployment", name},
                                  {"policy", PolicyLabel(updated->policy)},
                                  {"policy_json", ExitPolicyToJson(updated->policy)},
                                  {"policy_version", updated->policy_version}});
  ToProto(updated->policy, response);
  return Done(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* AdminService::Drain(grpc::CallbackServerContext* context,
                                              const v1::DrainRequest* request,
                                              v1::DrainResponse* response) {
  if (absl::Status s = AdmitAdmin(*state_, context, "Drain"); !s.ok()) {
    return Done(context, RefusalStatus(context, s));
  }
  const double grace = request->grace_seconds();
  if (!std::isfinite(grace) || grace < 0) {
    return Done(context, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                      "grace_seconds must be a finite number >= 0"));
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // The wait runs on the Server's drain thread, never on a gRPC thread.
  drain_(grace, [reactor, response](int64_t cancelled) {
    response->set_cancelled(cancelled);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

}  // namespace loopserve

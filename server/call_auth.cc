#include "server/call_auth.h"

#include <optional>

#include "server/log.h"
#include "server/proto_convert.h"

namespace loopserve {

absl::StatusOr<CallLease> AdmitCall(ServingState& state, grpc::CallbackServerContext* context,
                                    CallKind kind, const std::string& deployment,
                                    std::string_view method) {
  if (state.access == nullptr || !state.access->enabled()) return CallLease();
  std::optional<std::string_view> authorization;
  const auto& metadata = context->client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    authorization = std::string_view(it->second.data(), it->second.size());
  }
  absl::StatusOr<CallLease> lease = state.access->Admit(authorization, kind, deployment);
  if (lease.ok()) return lease;
  // The message names the key (for PERMISSION_DENIED / RESOURCE_EXHAUSTED)
  // but never carries what the client sent.
  nlohmann::json fields = {{"method", method},
                           {"status", absl::StatusCodeToString(lease.status().code())},
                           {"error", std::string(lease.status().message())},
                           {"peer", context->peer()}};
  if (kind == CallKind::kGenerate) fields["deployment"] = deployment;
  LogInfo("call refused", fields);
  if (kind == CallKind::kGenerate && state.metrics != nullptr) {
    state.metrics->RecordRejected(deployment, lease.status().code());
  }
  return lease.status();
}

grpc::Status RefusalStatus(grpc::CallbackServerContext* context, const absl::Status& status) {
  if (auto hint = status.GetPayload(kRetryAfterMsPayload); hint.has_value()) {
    context->AddTrailingMetadata(kRetryAfterMsMetadata, std::string(*hint));
  }
  return ToGrpcStatus(status);
}

}  // namespace loopserve

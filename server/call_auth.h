// The gRPC edge of access control: reads a call's `authorization` metadata,
// admits it (server/access_control) and, on refusal, logs the key's name
// (never the key) and builds the gRPC status with the retry hint as
// trailing metadata `retry-after-ms`.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"
#include "server/access_control.h"
#include "server/serving_state.h"

namespace loopserve {

// Trailing metadata of a RESOURCE_EXHAUSTED refusal: milliseconds to wait.
inline constexpr char kRetryAfterMsMetadata[] = "retry-after-ms";

// OK with the lease to hold for the call, or the refusal (already logged and,
// for generation, counted in metrics).
absl::StatusOr<CallLease> AdmitCall(ServingState& state, grpc::CallbackServerContext* context,
                                    CallKind kind, const std::string& deployment,
                                    std::string_view method);

// `status` as a gRPC status; a retry hint on it goes into the context's
// trailing metadata (call before Finish).
grpc::Status RefusalStatus(grpc::CallbackServerContext* context, const absl::Status& status);

}  // namespace loopserve

// Conversions between the engine's types and loopserve.v1 messages, and
// absl::Status -> grpc::Status (the codes share their numbering).
#pragma once

#include "absl/status/status.h"
#include "engine/deployment.h"
#include "engine/request.h"
#include "grpcpp/support/status.h"
#include "loopserve/v1/loopserve.pb.h"

namespace loopserve {

grpc::Status ToGrpcStatus(const absl::Status& status);
v1::FinishReason ToProto(FinishReason reason);
void ToProto(const Usage& usage, v1::Usage* out);
void ToProto(const GeneratedToken& token, v1::GeneratedToken* out);
void ToProto(const ExitPolicy& policy, v1::ExitPolicy* out);
void ToProto(const Deployment& deployment, v1::DeploymentInfo* out);
// A full policy as sent to Admin.SetExitPolicy: criterion required, kv_fill
// empty = reuse, min_loops 0 = 1, max_loops 0 = the model's L. Not validated
// against the model (the registry does that).
absl::StatusOr<ExitPolicy> FromProto(const v1::ExitPolicy& proto);

}  // namespace loopserve

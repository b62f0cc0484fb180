#include "server/proto_convert.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace loopserve {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode use the same canonical numbers.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kCancelled:
      return v1::FINISH_REASON_CANCELLED;
    case FinishReason::kError:
      return v1::FINISH_REASON_ERROR;
    case FinishReason::kNone:
      break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void ToProto(const Usage& usage, v1::Usage* out) {
  out->set_prompt_tokens(usage.prompt_tokens);
  out->set_completion_tokens(usage.completion_tokens);
  out->set_loops_executed(usage.loops_executed);
  out->set_loops_full_depth(usage.loops_full);
  out->set_flops_done(usage.flops_done);
  out->set_flops_full_depth(usage.flops_full);
  out->set_compute_saved(usage.ComputeSaved());
}

void ToProto(const GeneratedToken& token, v1::GeneratedToken* out) {
  out->set_token_id(token.token);
  out->set_logprob(token.logprob);
  out->set_loops(token.exit_loop + 1);
  for (const auto& [id, logprob] : token.top_logprobs) {
    v1::TokenLogprob* alt = out->add_top_logprobs();
    alt->set_token_id(id);
    alt->set_logprob(logprob);
  }
}

void ToProto(const ExitPolicy& policy, v1::ExitPolicy* out) {
  out->set_criterion(ExitCriterionName(policy.criterion));
  out->set_threshold(policy.threshold);
  out->set_min_loops(policy.min_loops);
  out->set_max_loops(policy.max_loops);
  out->set_kv_fill(KvFillName(policy.kv_fill));
}

void ToProto(const Deployment& d, v1::DeploymentInfo* out) {
  out->set_name(d.name);
  ToProto(d.policy, out->mutable_exit_policy());
  out->set_policy_name(d.policy_name);
  out->set_allow_exit_overrides(d.limits.allow_exit_overrides);
  out->set_default_max_tokens(d.default_max_tokens);
  out->set_max_tokens_limit(d.limits.max_tokens);
  out->set_max_prompt_tokens(d.limits.max_prompt_tokens);
}

absl::StatusOr<ExitPolicy> FromProto(const v1::ExitPolicy& proto) {
  ExitPolicy policy;
  if (proto.criterion().empty()) {
    return absl::InvalidArgumentError("exit_policy.criterion is required");
  }
  absl::StatusOr<ExitCriterion> criterion = ParseExitCriterion(proto.criterion());
  if (!criterion.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("exit_policy.criterion: ", criterion.status().message()));
  }
  policy.criterion = *criterion;
  policy.threshold = proto.threshold();
  policy.min_loops = proto.min_loops() == 0 ? 1 : proto.min_loops();
  policy.max_loops = proto.max_loops();
  if (!proto.kv_fill().empty()) {
    absl::StatusOr<KvFill> fill = ParseKvFill(proto.kv_fill());
    if (!fill.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("exit_policy.kv_fill: ", fill.status().message()));
    }
    policy.kv_fill = *fill;
  }
  return policy;
}

}  // namespace loopserve

// Fuzzes request validation (server/request_builder): any bytes parsed as a
// loopserve.v1.GenerateRequest, built against a fixed small model under two
// deployments (one allows exit overrides and has the tokenizer and tight
// server limits, one has neither and the default limits). An accepted
// request must satisfy everything the engine relies on and every limit.
#include <string>

#include "engine/deployment.h"
#include "engine/exit_policy.h"
#include "google/protobuf/stubs/logging.h"
#include "loopserve/v1/loopserve.pb.h"
#include "server/request_builder.h"
#include "server/request_limits.h"
#include "tests/fuzz/fuzz_fixtures.h"

namespace {

using namespace loopserve;

Deployment MakeDeployment(const std::string& name, bool allow_overrides) {
  Deployment d;
  d.name = name;
  d.policy.criterion = ExitCriterion::kMaxProb;
  d.policy.threshold = 0.8;
  d.default_max_tokens = 16;
  d.limits.max_prompt_tokens = 512;
  d.limits.max_tokens = 64;
  d.limits.allow_exit_overrides = allow_overrides;
  return d;
}

RequestLimits TightLimits() {
  RequestLimits l;
  l.max_context_tokens = 200;
  l.max_stop_sequences = 3;
  l.max_stop_sequence_bytes = 8;
  l.max_stop_token_ids = 4;
  l.max_logprobs = 2;
  return l;
}

void CheckBuilt(const BuiltRequest& built, const Deployment& d, const ModelConfig& config,
                const RequestLimits& limits) {
  const GenerationRequest& r = built.request;
  LOOPSERVE_CHECK(!r.prompt.empty());
  const int64_t context = limits.max_context_tokens > 0 ? limits.max_context_tokens
                                                        : config.max_position_embeddings;
  LOOPSERVE_CHECK_LE(static_cast<int64_t>(r.prompt.size()) + r.max_tokens, context);
  LOOPSERVE_CHECK_LE(static_cast<int>(r.stop_strings.size()), limits.max_stop_sequences);
  for (const std::string& s : r.stop_strings) {
    LOOPSERVE_CHECK(!s.empty() && static_cast<int>(s.size()) <= limits.max_stop_sequence_bytes);
  }
  LOOPSERVE_CHECK_LE(r.sampling.logprobs, limits.max_logprobs);
  LOOPSERVE_CHECK_LE(static_cast<int64_t>(r.prompt.size()), d.limits.max_prompt_tokens);
  LOOPSERVE_CHECK(r.max_tokens >= 1 && r.max_tokens <= d.limits.max_tokens) << r.max_tokens;
  for (int32_t id : r.stop_token_ids) {
    LOOPSERVE_CHECK(id >= 0 && id < config.vocab_size) << id;
  }
  LOOPSERVE_CHECK_OK(ValidateSamplingParams(r.sampling));
  LOOPSERVE_CHECK_OK(ValidateExitPolicy(r.policy, config));
  LOOPSERVE_CHECK(built.policy_override || r.policy == d.policy);
  LOOPSERVE_CHECK(!built.policy_override || d.limits.allow_exit_overrides);
  LOOPSERVE_CHECK(!built.policy_label.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Protobuf logs every invalid-UTF-8 string it rejects; at thousands of
  // inputs a second that drowns libFuzzer's own output.
  static const bool silenced = [] {
    google::protobuf::SetLogHandler(nullptr);
    return true;
  }();
  (void)silenced;
  v1::GenerateRequest proto;
  if (!proto.ParseFromArray(data, static_cast<int>(size))) return 0;
  const ModelConfig& config = fuzz::SmallModelConfig();
  static const Deployment* const open = new Deployment(MakeDeployment("open", true));
  static const Deployment* const closed = new Deployment(MakeDeployment("closed", false));

  static const RequestLimits tight = TightLimits();
  LOOPSERVE_CHECK_OK(ValidateRequestLimits(tight));

  absl::StatusOr<BuiltRequest> with_tokenizer =
      BuildGenerationRequest(proto, *open, config, &fuzz::SmallTokenizer(), tight);
  if (with_tokenizer.ok()) CheckBuilt(*with_tokenizer, *open, config, tight);

  absl::StatusOr<BuiltRequest> without =
      BuildGenerationRequest(proto, *closed, config, /*tokenizer=*/nullptr);
  if (without.ok()) {
    CheckBuilt(*without, *closed, config, RequestLimits{});
    LOOPSERVE_CHECK(proto.has_token_ids() && proto.stop_size() == 0);
  } else {
    LOOPSERVE_CHECK(!without.status().message().empty());
  }
  return 0;
}

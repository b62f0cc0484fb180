// Server-wide caps on what one generation request may ask for, on top of
// each deployment's own limits (max_prompt_tokens, max_tokens): the config's
// `limits` block. Values above the engine's hard caps are refused at
// start-up, so a config can only tighten them.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "engine/request.h"
#include "engine/sampler.h"
#include "nlohmann/json_fwd.hpp"

namespace loopserve {

struct RequestLimits {
  int max_context_tokens = 0;  // prompt + max_tokens; 0 = the model's context
  int max_stop_sequences = kMaxStopStrings;
  int max_stop_sequence_bytes = static_cast<int>(kMaxStopStringBytes);
  int max_stop_token_ids = 64;
  int max_logprobs = kMaxLogprobs;
  // gRPC refuses larger request messages with RESOURCE_EXHAUSTED before
  // they reach a handler (gRPC's own default is also 4 MiB).
  int max_receive_message_bytes = 4 << 20;
  // A GenerateStream whose client leaves one write unread this long is
  // cancelled (server/stream_stall_watchdog.h); 0 = never.
  int stream_write_timeout_seconds = 0;
};

// The config's `limits` object; InvalidArgument naming `limits.<field>`.
absl::StatusOr<RequestLimits> RequestLimitsFromJson(const nlohmann::json& json);
absl::Status ValidateRequestLimits(const RequestLimits& limits);

}  // namespace loopserve

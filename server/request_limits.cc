#include "server/request_limits.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace loopserve {
namespace {

absl::Status LimitError(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("server config: field `limits.", field, "`: ", what));
}

}  // namespace

absl::StatusOr<RequestLimits> RequestLimitsFromJson(const nlohmann::json& json) {
  if (!json.is_object()) return LimitError("", "expected an object");
  RequestLimits l;
  for (auto it = json.begin(); it != json.end(); ++it) {
    int* out = it.key() == "max_context_tokens"          ? &l.max_context_tokens
               : it.key() == "max_stop_sequences"        ? &l.max_stop_sequences
               : it.key() == "max_stop_sequence_bytes"   ? &l.max_stop_sequence_bytes
               : it.key() == "max_stop_token_ids"        ? &l.max_stop_token_ids
               : it.key() == "max_logprobs"              ? &l.max_logprobs
               : it.key() == "max_receive_message_bytes" ? &l.max_receive_message_bytes
               : it.key() == "stream_write_timeout_seconds"
                   ? &l.stream_write_timeout_seconds
                   : nullptr;
    if (out == nullptr) return LimitError(it.key(), "unknown field");
    const nlohmann::json& v = it.value();
    if (!v.is_number_integer() || v.get<int64_t>() < INT32_MIN || v.get<int64_t>() > INT32_MAX) {
      return LimitError(it.key(), "expected a 32-bit integer");
    }
    *out = v.get<int>();
  }
  if (absl::Status s = ValidateRequestLimits(l); !s.ok()) return s;
  return l;
}

absl::Status ValidateRequestLimits(const RequestLimits& l) {
  if (l.max_context_tokens < 0) {
    return LimitError("max_context_tokens", "must be >= 0 (0 = the model's context)");
  }
  if (l.max_stop_sequences < 0 || l.max_stop_sequences > kMaxStopStrings) {
    return LimitError("max_stop_sequences", absl::StrCat("must be in [0, ", kMaxStopStrings, "]"));
  }
  if (l.max_stop_sequence_bytes < 1 ||
      l.max_stop_sequence_bytes > static_cast<int>(kMaxStopStringBytes)) {
    return LimitError("max_stop_sequence_bytes",
                      absl::StrCat("must be in [1, ", kMaxStopStringBytes, "]"));
  }
  if (l.max_stop_token_ids < 0) return LimitError("max_stop_token_ids", "must be >= 0");
  if (l.max_logprobs < 0 || l.max_logprobs > kMaxLogprobs) {
    return LimitError("max_logprobs", absl::StrCat("must be in [0, ", kMaxLogprobs, "]"));
  }
  // Below 1 KiB even a small request would not fit.
  if (l.max_receive_message_bytes < 1024) {
    return LimitError("max_receive_message_bytes", "must be >= 1024");
  }
  if (l.stream_write_timeout_seconds < 0 || l.stream_write_timeout_seconds > 86400) {
    return LimitError("stream_write_timeout_seconds", "must be in [0, 86400] (0 = never)");
  }
  return absl::OkStatus();
}

}  // namespace loopserve

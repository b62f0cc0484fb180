#include "server/generate_call.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/log.h"
#include "server/proto_convert.h"
#include "server/request_builder.h"

namespace loopserve {
namespace {

// The context's deadline on the engine's clock; far-future = none.
Clock::time_point SteadyDeadline(std::chrono::system_clock::time_point deadline) {
  const auto now = std::chrono::system_clock::now();
  if (deadline >= now + std::chrono::hours(24 * 365)) return Clock::time_point::max();
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(deadline - now);
}

// How early gRPC's deadline timer may fire relative to `deadline_`.
constexpr Clock::duration kDeadlineSlack = std::chrono::milliseconds(50);

}  // namespace

GenerateCall::GenerateCall(ServingState* state, grpc::CallbackServerContext* context,
                           const v1::GenerateRequest& proto)
    : state_(state), proto_(proto), deadline_(SteadyDeadline(context->deadline())) {
  request_id_ = proto.request_id().empty()
                    ? absl::StrCat("req-", state->next_request_number.fetch_add(1))
                    : proto.request_id();
  deployment_ = proto.deployment().empty() ? state->default_deployment : proto.deployment();
  if (state->tokenizer != nullptr) decoder_.emplace(*state->tokenizer);
  stops_.assign(proto.stop().begin(), proto.stop().end());
  lease_ = state->leases.Take(context);  // parked by the service after admission
}

absl::Status GenerateCall::Start(RequestCallback callback) {
  absl::Status status;
  if (state_->draining.load()) {
    status = absl::UnavailableError("server is draining; not accepting new requests");
  } else {
    absl::ReaderMutexLock lock(&state_->policy_mu);
    absl::StatusOr<Deployment> deployment = state_->registry->Get(deployment_);
    absl::StatusOr<BuiltRequest> built =
        deployment.ok()
            ? BuildGenerationRequest(proto_, *deployment, state_->model->config,
                                     state_->tokenizer, state_->limits)
            : absl::StatusOr<BuiltRequest>(deployment.status());
    if (built.ok()) {
      policy_label_ = built->policy_label;
      prompt_tokens_ = static_cast<int64_t>(built->request.prompt.size());
      SubmitOptions options;
      options.deployment = deployment_;
      options.policy_override = built->policy_override;
      options.deadline = deadline_;
      absl::StatusOr<int64_t> id =
          state_->loop->Submit(std::move(built->request), options, std::move(callback));
      if (id.ok()) {
        engine_id_.store(*id);
        if (cancel_requested_.load()) state_->loop->Cancel(*id);
        return absl::OkStatus();
      }
      status = id.status();
    } else {
      status = built.status();
    }
  }
  LogInfo("request rejected", {{"request_id", request_id_},
                               {"deployment", deployment_},
                               {"status", absl::StatusCodeToString(status.code())},
                               {"error", std::string(status.message())}});
  if (state_->metrics != nullptr) state_->metrics->RecordRejected(deployment_, status.code());
  lease_.Release();
  return status;
}

void GenerateCall::Cancel() {
  cancel_requested_.store(true);
  const int64_t id = engine_id_.load();
  if (id > 0) state_->loop->Cancel(id);
}

void GenerateCall::Observe(const RequestEvent& event) {
  for (const GeneratedToken& t : event.tokens) exit_loops_.push_back(t.exit_loop);
}

std::string GenerateCall::ReleaseText(bool final) {
  if (stopped_) return "";
  size_t end = text_.size();
  size_t longest = 0;
  for (const std::string& s : stops_) longest = std::max(longest, s.size());
  const size_t from = released_ > longest ? released_ - longest : 0;
  size_t match = std::string::npos;
  for (const std::string& s : stops_) match = std::min(match, text_.find(s, from));
  if (match != std::string::npos) {
    end = match;  // the stop string and what follows it are not returned
    stopped_ = true;
  } else if (!final) {
    // Hold back the longest tail that is a proper prefix of a stop string:
    // it may complete into one with the next token.
    size_t hold = 0;
    for (const std::string& s : stops_) {
      for (size_t k = std::min(s.size() - 1, text_.size() - released_); k > hold; --k) {
        if (text_.compare(text_.size() - k, k, s, 0, k) == 0) {
          hold = k;
          break;
        }
      }
    }
    end = text_.size() - hold;
  }
  end = std::max(end, released_);
  std::string out = text_.substr(released_, end - released_);
  released_ = end;
  return out;
}

void GenerateCall::AppendTokens(const RequestEvent& event,
                                google::protobuf::RepeatedPtrField<v1::GeneratedToken>* out) {
  for (const GeneratedToken& t : event.tokens) {
    v1::GeneratedToken* p = out->Add();
    ToProto(t, p);
    if (!decoder_.has_value()) continue;
    if (stops_.empty()) {
      p->set_text(decoder_->Add(t.token));
    } else {
      text_ += decoder_->Add(t.token);
      p->set_text(ReleaseText(/*final=*/false));
    }
  }
  if (event.finished && decoder_.has_value() && !out->empty()) {
    if (stops_.empty()) {
      out->rbegin()->mutable_text()->append(decoder_->Flush());
    } else {
      text_ += decoder_->Flush();
      out->rbegin()->mutable_text()->append(ReleaseText(/*final=*/true));
    }
  }
}

absl::Status GenerateCall::Complete(const RequestEvent& event) {
  Observe(event);
  absl::Status status = event.status;
  if (status.ok() && event.finish_reason == FinishReason::kError) {
    status = absl::InternalError("generation failed in the engine");
  }
  if (absl::IsCancelled(status)) {
    if (Clock::now() + kDeadlineSlack >= deadline_) {
      // gRPC cancels the call when its deadline passes; say why. Its timer
      // runs on its own clock and may fire a few ms before our steady-clock
      // copy of the deadline, hence the slack: a client cancel this close
      // to its own deadline is reported as the deadline.
      status = absl::DeadlineExceededError("request deadline exceeded");
    } else if (!cancel_requested_.load() && state_->draining.load()) {
      // Cut off by a drain: retryable on another replica.
      status = absl::UnavailableError(
          "server is draining; request cancelled at the end of the grace period");
    }
  }
  // Freed before the client can see the end, so its next call finds the slot.
  lease_.Release();
  const Usage& u = event.usage;
  LogInfo("request finished", {{"request_id", request_id_},
                               {"deployment", deployment_},
                               {"api_key", lease_.key_name()},
                               {"policy", policy_label_},
                               {"status", absl::StatusCodeToString(status.code())},
                               {"finish_reason", FinishReasonName(event.finish_reason)},
                               {"prompt_tokens", prompt_tokens_},
                               {"completion_tokens", static_cast<int64_t>(exit_loops_.size())},
                               {"loops", u.loops_executed},
                               {"loops_full_depth", u.loops_full},
                               {"compute_saved", u.ComputeSaved()},
                               {"queue_ms", event.timing.queue_seconds * 1e3},
                               {"ttft_ms", event.timing.first_token_seconds * 1e3},
                               {"e2e_ms", event.timing.total_seconds * 1e3}});
  if (state_->metrics != nullptr) {
    state_->metrics->RecordRequest(deployment_, policy_label_, status.code(), event, exit_loops_);
  }
  return status;
}

}  // namespace loopserve

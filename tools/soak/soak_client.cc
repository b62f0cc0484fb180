#include "tools/soak/soak_client.h"

#include <chrono>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/byte_buffer.h"

namespace loopserve::soak {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Long enough for any valid request under the soak's load.
constexpr int kValidTimeoutMs = 120'000;

std::chrono::system_clock::time_point In(int ms) {
  return std::chrono::system_clock::now() + std::chrono::milliseconds(ms);
}

double Since(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

absl::Status FromGrpc(const grpc::Status& s, const std::string& what) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

// Serialized bytes that no GenerateRequest parser may accept: a length
// running past the end, invalid UTF-8 in a proto3 string, an invalid wire
// type, a packed field cut short.
std::string GarbageBytes(int64_t index) {
  switch (index % 4) {
    case 0: return std::string("\x12\xe8\x07In the", 7);          // text, length 1000
    case 1: return std::string("\x0a\x03\xff\xfe\xfd", 5);        // deployment, bad UTF-8
    case 2: return std::string("\x0f\x01\x02\x03", 4);            // wire type 7
    default: return std::string("\x1a\x04\x0a\x09\x01\x02", 6);   // token_ids cut short
  }
}

}  // namespace

void ReadUsage(const v1::Usage& usage, Outcome& out) {
  out.usage_prompt_tokens = usage.prompt_tokens();
  out.usage_completion_tokens = usage.completion_tokens();
  out.usage_loops_full_depth = usage.loops_full_depth();
}

bool WasRecomputed(const Outcome& out, int num_loops) {
  // Every forwarded position adds num_loops to loops_full_depth; without a
  // preemption the positions are the prompt and all tokens but the last.
  const int64_t forwards = out.usage_prompt_tokens + static_cast<int64_t>(out.tokens.size()) - 1;
  return out.usage_loops_full_depth > forwards * num_loops;
}

void ReadUnaryReply(const v1::GenerateResponse& reply, Outcome& out) {
  for (const v1::GeneratedToken& t : reply.tokens()) out.tokens.push_back(t.token_id());
  out.finish_reason = reply.finish_reason();
  if (reply.has_usage()) ReadUsage(reply.usage(), out);
  if (!reply.has_usage()) {
    out.shape_error = "reply without usage";
  } else if (out.usage_completion_tokens != static_cast<int64_t>(out.tokens.size())) {
    out.shape_error = absl::StrCat("usage.completion_tokens ", out.usage_completion_tokens,
                                   " != ", out.tokens.size(), " tokens");
  } else if (out.finish_reason != v1::FINISH_REASON_LENGTH &&
             out.finish_reason != v1::FINISH_REASON_STOP) {
    out.shape_error = absl::StrCat("finish_reason ", out.finish_reason, " on an OK reply");
  }
}

SoakClient::SoakClient(std::shared_ptr<grpc::Channel> channel, const SoakPlan* plan)
    : plan_(plan),
      channel_(std::move(channel)),
      stub_(v1::LoopServe::NewStub(channel_)),
      admin_(v1::Admin::NewStub(channel_)),
      generic_(std::make_unique<grpc::GenericStub>(channel_)) {}

v1::GenerateRequest SoakClient::ValidRequest(const RequestSpec& spec) const {
  const PromptTemplate& t = plan_->templates()[static_cast<size_t>(spec.template_index)];
  v1::GenerateRequest r;
  r.set_deployment(spec.deployment);
  r.mutable_token_ids()->mutable_ids()->Add(t.prompt.begin(), t.prompt.end());
  r.set_max_tokens(t.max_tokens);
  r.mutable_sampling()->set_temperature(0);
  r.set_request_id(absl::StrCat("soak-", spec.index));
  return r;
}

std::vector<Outcome> SoakClient::Run(const RequestSpec& spec) {
  switch (spec.kind) {
    case RequestKind::kUnary:
    case RequestKind::kLive:
      if (spec.kind == RequestKind::kLive && spec.stream) {
        return {Stream(spec, ValidRequest(spec), kValidTimeoutMs, -1)};
      }
      return {Unary(spec, ValidRequest(spec), kValidTimeoutMs)};
    case RequestKind::kStream:
      return {Stream(spec, ValidRequest(spec), kValidTimeoutMs, -1)};
    case RequestKind::kCancelUnary:
      return {CancelUnary(spec)};
    case RequestKind::kCancelStream:
      return {Stream(spec, ValidRequest(spec), kValidTimeoutMs, spec.cancel_after_messages)};
    case RequestKind::kShortDeadline:
      return {spec.stream ? Stream(spec, ValidRequest(spec), spec.deadline_ms, -1)
                          : Unary(spec, ValidRequest(spec), spec.deadline_ms)};
    case RequestKind::kMalformed:
      return {Malformed(spec)};
    case RequestKind::kGarbage:
      return {Garbage(spec)};
    case RequestKind::kBurst:
      return Burst(spec);
  }
  return {};
}

Outcome SoakClient::Unary(const RequestSpec& spec, const v1::GenerateRequest& request,
                          int timeout_ms) {
  Outcome out;
  out.spec = spec;
  const auto start = SteadyClock::now();
  grpc::ClientContext ctx;
  ctx.set_deadline(In(timeout_ms));
  v1::GenerateResponse reply;
  const grpc::Status s = stub_->Generate(&ctx, request, &reply);
  out.seconds = Since(start);
  out.code = s.error_code();
  out.message = s.error_message();
  if (s.ok()) ReadUnaryReply(reply, out);
  return out;
}

Outcome SoakClient::Stream(const RequestSpec& spec, const v1::GenerateRequest& request,
                           int timeout_ms, int cancel_after_messages) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(timeout_ms));
  const auto start = SteadyClock::now();
  auto reader = StartStream(request, &ctx);
  Outcome out = ReadStream(spec, &ctx, reader.get(), cancel_after_messages, nullptr);
  out.seconds = Since(start);
  return out;
}

std::unique_ptr<grpc::ClientReader<v1::GenerateStreamResponse>> SoakClient::StartStream(
    const v1::GenerateRequest& request, grpc::ClientContext* ctx) {
  return stub_->GenerateStream(ctx, request);
}

Outcome SoakClient::ReadStream(const RequestSpec& spec, grpc::ClientContext* ctx,
                               grpc::ClientReader<v1::GenerateStreamResponse>* reader,
                               int cancel_after_messages, absl::Notification* first_message) {
  Outcome out;
  out.spec = spec;
  v1::GenerateStreamResponse message;
  int messages = 0;
  bool saw_last = false;
  if (cancel_after_messages == 0) ctx->TryCancel();
  while (reader->Read(&message)) {
    ++messages;
    if (first_message != nullptr && !first_message->HasBeenNotified()) first_message->Notify();
    if (saw_last && out.shape_error.empty()) out.shape_error = "message after the last one";
    for (const v1::GeneratedToken& t : message.tokens()) out.tokens.push_back(t.token_id());
    if (message.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      saw_last = true;
      out.finish_reason = message.finish_reason();
      ReadUsage(message.usage(), out);
    } else if (message.has_usage() && out.shape_error.empty()) {
      out.shape_error = "usage on a message that is not the last";
    }
    if (messages == cancel_after_messages) ctx->TryCancel();
  }
  const grpc::Status s = reader->Finish();
  if (first_message != nullptr && !first_message->HasBeenNotified()) first_message->Notify();
  out.code = s.error_code();
  out.message = s.error_message();
  if (s.ok() && out.shape_error.empty()) {
    if (!saw_last) {
      out.shape_error = "stream ended OK without a finish_reason";
    } else if (out.usage_completion_tokens != static_cast<int64_t>(out.tokens.size())) {
      out.shape_error = absl::StrCat("usage.completion_tokens ", out.usage_completion_tokens,
                                     " != ", out.tokens.size(), " tokens streamed");
    }
  }
  return out;
}

Outcome SoakClient::CancelUnary(const RequestSpec& spec) {
  Outcome out;
  out.spec = spec;
  const auto start = SteadyClock::now();
  grpc::ClientContext ctx;
  ctx.set_deadline(In(kValidTimeoutMs));
  const v1::GenerateRequest request = ValidRequest(spec);
  v1::GenerateResponse reply;
  absl::Notification done;
  grpc::Status status;
  stub_->async()->Generate(&ctx, &request, &reply, [&](grpc::Status s) {
    status = std::move(s);
    done.Notify();
  });
  if (!done.WaitForNotificationWithTimeout(absl::Milliseconds(spec.cancel_after_ms))) {
    ctx.TryCancel();
  }
  done.WaitForNotification();
  out.seconds = Since(start);
  out.code = status.error_code();
  out.message = status.error_message();
  if (status.ok()) ReadUnaryReply(reply, out);
  return out;
}

Outcome SoakClient::Malformed(const RequestSpec& spec) {
  const SoakDeployments& d = plan_->options().deployments;
  const int64_t vocab = plan_->options().vocab_size;
  const int context = plan_->options().context;
  v1::GenerateRequest r = ValidRequest(spec);
  std::mt19937_64 rng(static_cast<uint64_t>(spec.index));
  switch (spec.malformed) {
    case MalformedCase::kUnknownDeployment: break;  // the plan named no such deployment
    case MalformedCase::kNoPrompt: r.clear_token_ids(); break;
    case MalformedCase::kTokenOutOfVocab:
      r.mutable_token_ids()->set_ids(0, static_cast<int32_t>(vocab + rng() % 1000));
      break;
    case MalformedCase::kNegativeToken: r.mutable_token_ids()->add_ids(-1 - static_cast<int32_t>(rng() % 5)); break;
    case MalformedCase::kZeroMaxTokens: r.set_max_tokens(rng() % 2 == 0 ? 0 : -3); break;
    case MalformedCase::kMaxTokensOverLimit: r.set_max_tokens(d.max_tokens_limit + 1); break;
    case MalformedCase::kOverContext: {
      // Within every deployment's prompt limit, past the model's context.
      auto* ids = r.mutable_token_ids()->mutable_ids();
      while (ids->size() < d.faulty_max_prompt_tokens) ids->Add(5);
      r.set_max_tokens(std::min(d.max_tokens_limit,
                                context - ids->size() + 1 + static_cast<int>(rng() % 8)));
      break;
    }
    case MalformedCase::kPromptOverLimit: {
      auto* ids = r.mutable_token_ids()->mutable_ids();
      while (ids->size() <= d.faulty_max_prompt_tokens) ids->Add(6);
      r.set_max_tokens(1);
      break;
    }
    case MalformedCase::kNegativeTemperature: r.mutable_sampling()->set_temperature(-1); break;
    case MalformedCase::kTooManyLogprobs: r.mutable_sampling()->set_logprobs(21 + static_cast<int32_t>(rng() % 50)); break;
    case MalformedCase::kOverrideNotAllowed: r.mutable_exit_override()->set_threshold(0.5); break;
    case MalformedCase::kBadOverride:
      r.mutable_exit_override()->set_criterion(rng() % 2 == 0 ? "sometimes" : "");
      break;
    case MalformedCase::kStopIdOutOfVocab:
      r.add_stop_token_ids(static_cast<int32_t>(vocab + 3));
      break;
    case MalformedCase::kCount: break;
  }
  return spec.stream ? Stream(spec, r, kValidTimeoutMs, -1) : Unary(spec, r, kValidTimeoutMs);
}

Outcome SoakClient::Garbage(const RequestSpec& spec) {
  Outcome out;
  out.spec = spec;
  const auto start = SteadyClock::now();
  const std::string bytes = GarbageBytes(spec.index);
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer reply;
  grpc::ClientContext ctx;
  ctx.set_deadline(In(kValidTimeoutMs));
  absl::Notification done;
  grpc::Status status;
  generic_->UnaryCall(&ctx, "/loopserve.v1.LoopServe/Generate", grpc::StubOptions(), &request,
                      &reply, [&](grpc::Status s) {
                        status = std::move(s);
                        done.Notify();
                      });
  done.WaitForNotification();
  out.seconds = Since(start);
  out.code = status.error_code();
  out.message = status.error_message();
  return out;
}

std::vector<Outcome> SoakClient::Burst(const RequestSpec& spec) {
  struct Call {
    Outcome out;
    v1::GenerateRequest request;
    v1::GenerateResponse reply;
    grpc::ClientContext ctx;
    absl::Notification done;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Call>> calls;
  const auto start = SteadyClock::now();
  const int num_templates = static_cast<int>(plan_->templates().size());
  for (int i = 0; i < spec.burst_size; ++i) {
    auto call = std::make_unique<Call>();
    call->out.spec = spec;
    call->out.spec.template_index = (spec.template_index + i) % num_templates;
    call->request = ValidRequest(call->out.spec);
    call->request.set_request_id(absl::StrCat("soak-", spec.index, "-burst-", i));
    call->ctx.set_deadline(In(kValidTimeoutMs));
    calls.push_back(std::move(call));
  }
  for (auto& c : calls) {
    Call* call = c.get();
    stub_->async()->Generate(&call->ctx, &call->request, &call->reply, [call](grpc::Status s) {
      call->status = std::move(s);
      call->done.Notify();
    });
  }
  std::vector<Outcome> outcomes;
  for (auto& c : calls) {
    c->done.WaitForNotification();
    c->out.seconds = Since(start);
    c->out.code = c->status.error_code();
    c->out.message = c->status.error_message();
    if (c->status.ok()) ReadUnaryReply(c->reply, c->out);
    outcomes.push_back(std::move(c->out));
  }
  return outcomes;
}

absl::StatusOr<v1::ModelInfoResponse> SoakClient::ModelInfo() {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(10'000));
  ctx.set_wait_for_ready(true);
  v1::ModelInfoResponse info;
  const grpc::Status s = stub_->ModelInfo(&ctx, v1::ModelInfoRequest(), &info);
  if (!s.ok()) return FromGrpc(s, "ModelInfo");
  return info;
}

absl::StatusOr<v1::ListDeploymentsResponse> SoakClient::ListDeployments() {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(10'000));
  v1::ListDeploymentsResponse list;
  const grpc::Status s = stub_->ListDeployments(&ctx, v1::ListDeploymentsRequest(), &list);
  if (!s.ok()) return FromGrpc(s, "ListDeployments");
  return list;
}

absl::Status SoakClient::SetExitPolicy(const std::string& deployment,
                                       const v1::ExitPolicy& policy) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(10'000));
  v1::SetExitPolicyRequest request;
  request.set_deployment(deployment);
  *request.mutable_exit_policy() = policy;
  v1::ExitPolicy reply;
  const grpc::Status s = admin_->SetExitPolicy(&ctx, request, &reply);
  if (!s.ok()) return FromGrpc(s, absl::StrCat("SetExitPolicy ", deployment));
  return absl::OkStatus();
}

absl::StatusOr<v1::ExitPolicy> SoakClient::GetExitPolicy(const std::string& deployment) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(10'000));
  v1::GetExitPolicyRequest request;
  request.set_deployment(deployment);
  v1::ExitPolicy reply;
  const grpc::Status s = admin_->GetExitPolicy(&ctx, request, &reply);
  if (!s.ok()) return FromGrpc(s, absl::StrCat("GetExitPolicy ", deployment));
  return reply;
}

}  // namespace loopserve::soak

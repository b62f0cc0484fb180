#include "tools/bench/client.h"

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "absl/strings/str_cat.h"

namespace loopserve::bench {
namespace {

using BenchClock = std::chrono::steady_clock;

// gRPC deadlines take system_clock time points.
std::chrono::system_clock::time_point DeadlineIn(double seconds) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(
             std::chrono::duration<double>(seconds));
}

double Seconds(BenchClock::time_point from, BenchClock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

absl::Status FromGrpc(const grpc::Status& s, const char* what) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

void AddTokens(const google::protobuf::RepeatedPtrField<v1::GeneratedToken>& tokens,
               RequestResult& r) {
  for (const v1::GeneratedToken& t : tokens) r.token_loops += t.loops();
}

void CopyUsage(const v1::Usage& usage, RequestResult& r) {
  r.prompt_tokens = usage.prompt_tokens();
  r.completion_tokens = usage.completion_tokens();
  r.loops_executed = usage.loops_executed();
  r.loops_full_depth = usage.loops_full_depth();
  r.flops_done = usage.flops_done();
  r.flops_full_depth = usage.flops_full_depth();
}

}  // namespace

BenchClient::BenchClient(const BenchConfig& config) : config_(config) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  channel_ = grpc::CreateCustomChannel(config.target, grpc::InsecureChannelCredentials(), args);
  stub_ = v1::LoopServe::NewStub(channel_);
}

absl::StatusOr<ServerInfo> BenchClient::FetchServerInfo() {
  ServerInfo info;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineIn(10));
    ctx.set_wait_for_ready(true);
    v1::ModelInfoResponse model;
    grpc::Status s = stub_->ModelInfo(&ctx, v1::ModelInfoRequest(), &model);
    if (!s.ok()) return FromGrpc(s, absl::StrCat("ModelInfo on ", config_.target).c_str());
    info.vocab_size = model.vocab_size();
    info.num_loops = model.num_loops();
    info.backend = model.backend();
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(DeadlineIn(10));
  v1::ListDeploymentsResponse list;
  grpc::Status s = stub_->ListDeployments(&ctx, v1::ListDeploymentsRequest(), &list);
  if (!s.ok()) return FromGrpc(s, "ListDeployments");
  info.deployment = config_.deployment.empty() ? list.default_deployment() : config_.deployment;
  for (const v1::DeploymentInfo& d : list.deployments()) {
    if (d.name() != info.deployment) continue;
    const v1::ExitPolicy& p = d.exit_policy();
    info.policy = !d.policy_name().empty()   ? d.policy_name()
                  : p.criterion() == "never" ? "never"
                                             : absl::StrCat(p.criterion(), ":", p.threshold());
    info.max_prompt_tokens = d.max_prompt_tokens();
    info.max_tokens_limit = d.max_tokens_limit();
    return info;
  }
  return absl::NotFoundError(
      absl::StrCat("deployment `", info.deployment, "` not served by ", config_.target));
}

v1::GenerateRequest BenchClient::BuildRequest(const RequestSpec& spec) const {
  v1::GenerateRequest request;
  request.set_deployment(config_.deployment);
  request.mutable_token_ids()->mutable_ids()->Add(spec.prompt.begin(), spec.prompt.end());
  request.set_max_tokens(spec.max_tokens);
  if (config_.temperature >= 0) {
    request.mutable_sampling()->set_temperature(static_cast<float>(config_.temperature));
  }
  request.mutable_sampling()->set_seed(config_.seed + static_cast<uint64_t>(spec.index));
  request.set_request_id(absl::StrCat("bench-", spec.index));
  return request;
}

RequestResult BenchClient::Send(const RequestSpec& spec) {
  const v1::GenerateRequest request = BuildRequest(spec);
  return config_.stream ? SendStream(request) : SendUnary(request);
}

RequestResult BenchClient::SendUnary(const v1::GenerateRequest& request) {
  RequestResult r;
  grpc::ClientContext ctx;
  const auto start = BenchClock::now();
  ctx.set_deadline(DeadlineIn(config_.request_timeout_s));
  v1::GenerateResponse response;
  const grpc::Status s = stub_->Generate(&ctx, request, &response);
  r.e2e_s = Seconds(start, BenchClock::now());
  r.code = s.error_code();
  r.message = s.error_message();
  if (!s.ok()) return r;
  AddTokens(response.tokens(), r);
  CopyUsage(response.usage(), r);
  r.finish_reason = response.finish_reason();
  return r;
}

RequestResult BenchClient::SendStream(const v1::GenerateRequest& request) {
  RequestResult r;
  grpc::ClientContext ctx;
  const auto start = BenchClock::now();
  ctx.set_deadline(DeadlineIn(config_.request_timeout_s));
  std::unique_ptr<grpc::ClientReader<v1::GenerateStreamResponse>> reader =
      stub_->GenerateStream(&ctx, request);
  v1::GenerateStreamResponse message;
  BenchClock::time_point first_token, last_token;
  int64_t tokens = 0;
  while (reader->Read(&message)) {
    const auto now = BenchClock::now();
    if (message.tokens_size() > 0) {
      if (tokens == 0) first_token = now;
      last_token = now;
      tokens += message.tokens_size();
      AddTokens(message.tokens(), r);
    }
    if (message.has_usage()) CopyUsage(message.usage(), r);
    if (message.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      r.finish_reason = message.finish_reason();
    }
  }
  const grpc::Status s = reader->Finish();
  r.e2e_s = Seconds(start, BenchClock::now());
  r.code = s.error_code();
  r.message = s.error_message();
  if (tokens >= 1) r.ttft_s = Seconds(start, first_token);
  // Tokens of one message arrive together: TPOT spreads the time between the
  // first and the last token over the tokens after the first.
  if (tokens >= 2) r.tpot_s = Seconds(first_token, last_token) / static_cast<double>(tokens - 1);
  if (r.completion_tokens == 0) r.completion_tokens = tokens;
  return r;
}

}  // namespace loopserve::bench

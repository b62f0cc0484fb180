// Request limits from the config's `limits` block and the deployment's
// limits against the real server: each violation is its own clear status
// (INVALID_ARGUMENT naming the limit; RESOURCE_EXHAUSTED for an oversized
// message), on unary and streaming calls alike, and none of them disturbs a
// stream running at the same time or the requests after it. A stream whose
// client stops reading is cancelled after `stream_write_timeout_seconds`.
#include <chrono>
#include <future>
#include <thread>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "gtest/gtest.h"
#include "tests/integration/test_model.h"

namespace loopserve::testing {
namespace {

using ::testing::HasSubstr;

struct Violation {
  std::string name;
  v1::GenerateRequest request;
  grpc::StatusCode code;
  std::string message;
};

std::vector<Violation> Violations() {
  const std::vector<int32_t> ok = {1, 2, 3};
  std::vector<Violation> v;
  v.push_back({"prompt tokens", IdsRequest("default", std::vector<int32_t>(33, 5), 4),
               grpc::StatusCode::INVALID_ARGUMENT, "allows at most 32"});
  v.push_back({"max_tokens", IdsRequest("default", ok, 41), grpc::StatusCode::INVALID_ARGUMENT,
               "exceeds deployment `default` limit of 40"});
  v.push_back({"total context", IdsRequest("default", std::vector<int32_t>(30, 5), 40),
               grpc::StatusCode::INVALID_ARGUMENT, "exceeds the context limit of 64 tokens"});
  {
    v1::GenerateRequest r = IdsRequest("default", ok, 4);
    for (const char* s : {"a", "b", "c"}) r.add_stop(s);
    v.push_back({"stop count", r, grpc::StatusCode::INVALID_ARGUMENT,
                 "stop has 3 sequences; this server allows at most 2"});
  }
  {
    v1::GenerateRequest r = IdsRequest("default", ok, 4);
    r.add_stop("123456789");
    v.push_back({"stop length", r, grpc::StatusCode::INVALID_ARGUMENT,
                 "stop[0] has 9 bytes; allowed 1..8"});
  }
  {
    v1::GenerateRequest r = IdsRequest("default", ok, 4);
    for (int id : {1, 2, 3, 4}) r.add_stop_token_ids(id);
    v.push_back({"stop ids", r, grpc::StatusCode::INVALID_ARGUMENT,
                 "stop_token_ids has 4 ids; this server allows at most 3"});
  }
  {
    v1::GenerateRequest r = IdsRequest("default", ok, 4);
    r.mutable_sampling()->set_logprobs(4);
    v.push_back({"logprobs", r, grpc::StatusCode::INVALID_ARGUMENT,
                 "sampling.logprobs is 4; this server allows at most 3"});
  }
  {
    // 6000 one-byte varints, over the 4 KiB receive limit: gRPC refuses it
    // before any handler runs.
    v1::GenerateRequest r = IdsRequest("default", std::vector<int32_t>(6000, 63), 4);
    v.push_back({"message size", r, grpc::StatusCode::RESOURCE_EXHAUSTED, "larger than max"});
  }
  return v;
}

TEST(ServerLimitsTest, EachViolationHasItsStatusAndDisturbsNothing) {
  TestModel model;
  nlohmann::json config = ServerConfigJson(
      model, nlohmann::json::array({{{"name", "default"},
                                     {"limits", {{"max_prompt_tokens", 32}, {"max_tokens", 40}}}},
                                    {{"name", "long"}, {"limits", {{"max_tokens", 60}}}}}));
  config["limits"] = {
      {"max_context_tokens", 64}, {"max_stop_sequences", 2}, {"max_stop_sequence_bytes", 8},
      {"max_stop_token_ids", 3},  {"max_logprobs", 3},       {"max_receive_message_bytes", 4096}};
  WriteJson(model.Join("limits.json"), config);
  std::unique_ptr<ServerProcess> server = StartServer(model.Join("limits.json"));
  ASSERT_NE(server, nullptr);

  // A stream that runs while every violation is refused.
  const std::vector<int32_t> long_prompt = Prompt(5);
  auto stub = LoopServeStub(server->address());
  grpc::ClientContext stream_context;
  stream_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto reader = stub->GenerateStream(&stream_context, IdsRequest("long", long_prompt, 56));
  v1::GenerateStreamResponse message;
  ASSERT_TRUE(reader->Read(&message));
  std::vector<int32_t> streamed = TokenIds(message.tokens());

  for (const Violation& v : Violations()) {
    SCOPED_TRACE(v.name);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::GenerateResponse response;
    grpc::Status s = stub->Generate(&context, v.request, &response);
    EXPECT_EQ(s.error_code(), v.code) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(v.message));

    grpc::ClientContext stream_ctx;
    stream_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto refused = stub->GenerateStream(&stream_ctx, v.request);
    v1::GenerateStreamResponse none;
    EXPECT_FALSE(refused->Read(&none));
    EXPECT_EQ(refused->Finish().error_code(), v.code);
  }
  // Right at each limit is fine: 2 stops of 8 bytes, 3 stop ids, 3
  // logprobs, 24 + 40 = 64 tokens.
  {
    v1::GenerateRequest r = IdsRequest("default", std::vector<int32_t>(24, 5), 40);
    r.add_stop_token_ids(60);
    r.add_stop_token_ids(61);
    r.add_stop_token_ids(62);
    r.mutable_sampling()->set_logprobs(3);
    grpc::ClientContext context;
    v1::GenerateResponse response;
    grpc::Status s = stub->Generate(&context, r, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }

  while (reader->Read(&message)) {
    const std::vector<int32_t> ids = TokenIds(message.tokens());
    streamed.insert(streamed.end(), ids.begin(), ids.end());
  }
  grpc::Status s = reader->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  GenerationRequest expected;
  expected.prompt = long_prompt;
  expected.max_tokens = 56;
  EXPECT_EQ(streamed, TokenIds(model.Expected(expected)));
  EXPECT_EQ(server->Terminate(std::chrono::seconds(20)), 0);
}

TEST(ServerLimitsTest, AStreamLeftUnreadIsCancelledAfterTheWriteTimeout) {
  TestModel model;
  nlohmann::json config =
      ServerConfigJson(model, nlohmann::json::array({{{"name", "default"}}}));
  config["limits"] = {{"stream_write_timeout_seconds", 1}};
  WriteJson(model.Join("stall.json"), config);
  std::unique_ptr<ServerProcess> server = StartServer(model.Join("stall.json"));
  ASSERT_NE(server, nullptr);

  // A client that takes only what HTTP/2 flow control lets through before
  // the application reads: no BDP-grown window, a small read-ahead.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  auto stall_stub = v1::LoopServe::NewStub(
      grpc::CreateCustomChannel(server->address(), grpc::InsecureChannelCredentials(), args));
  // ~900 tokens with 20 alternatives each: a few hundred KB, far more than
  // a 64 KB stream window.
  v1::GenerateRequest big = IdsRequest("default", Prompt(3), 900);
  big.mutable_sampling()->set_logprobs(20);
  grpc::ClientContext stalled_context;
  stalled_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  auto stalled = stall_stub->GenerateStream(&stalled_context, big);

  // A well-behaved stream at the same time finishes untouched.
  auto stub = LoopServeStub(server->address());
  grpc::ClientContext reader_context;
  reader_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  auto reader = stub->GenerateStream(&reader_context, big);
  v1::GenerateStreamResponse message;
  int read_tokens = 0;
  while (reader->Read(&message)) read_tokens += message.tokens_size();
  grpc::Status s = reader->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(read_tokens, 900);

  // The stalled one: once its write has waited 1 s (scanned every 100 ms),
  // the server cancels it; the client finds the tokens that fit the window,
  // then CANCELLED.
  ASSERT_TRUE(Eventually([&] {
    absl::StatusOr<std::string> body = HttpGet(server->metrics_address(), "/metrics");
    return body.ok() && MetricValue(*body, "loopserve_stream_write_timeouts_total").value_or(0) == 1;
  })) << server->Logs();
  int stalled_tokens = 0;
  while (stalled->Read(&message)) stalled_tokens += message.tokens_size();
  EXPECT_EQ(stalled->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_LT(stalled_tokens, 900);
  EXPECT_THAT(server->Logs(), HasSubstr("stream cancelled: the client left a write unread"));

  // The server goes on serving.
  grpc::ClientContext after_context;
  v1::GenerateResponse response;
  EXPECT_TRUE(stub->Generate(&after_context, IdsRequest("default", Prompt(4), 8), &response).ok());
  EXPECT_EQ(server->Terminate(std::chrono::seconds(20)), 0);
}

}  // namespace
}  // namespace loopserve::testing

// Integration tests that need a server of their own: KV exhaustion with
// preemption; Admin.Drain (requests past the grace period end UNAVAILABLE,
// health NOT_SERVING, new requests UNAVAILABLE); SIGTERM with requests in
// flight (they complete, the process exits 0); a bad config.
#include <chrono>
#include <cstdlib>
#include <future>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "tests/integration/test_model.h"

namespace loopserve::testing {
namespace {

using HealthRequest = grpc::health::v1::HealthCheckRequest;
using HealthResponse = grpc::health::v1::HealthCheckResponse;

nlohmann::json OneDeployment() {
  return nlohmann::json::array({{{"name", "default"}, {"limits", {{"max_tokens", 900}}}}});
}

GenerationRequest EngineRequest(const std::vector<int32_t>& prompt, int max_tokens) {
  GenerationRequest r;
  r.prompt = prompt;
  r.max_tokens = max_tokens;
  return r;
}

HealthResponse::ServingStatus Health(const std::string& address, const std::string& service) {
  auto health = HealthStub(address);
  grpc::ClientContext context;
  HealthRequest request;
  request.set_service(service);
  HealthResponse response;
  const grpc::Status s = health->Check(&context, request, &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return response.status();
}

// Unary Generate on a thread of its own.
std::future<std::pair<grpc::Status, v1::GenerateResponse>> GenerateAsync(
    const std::string& address, v1::GenerateRequest request) {
  return std::async(std::launch::async, [address, request] {
    auto stub = LoopServeStub(address);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::GenerateResponse response;
    grpc::Status status = stub->Generate(&context, request, &response);
    return std::make_pair(status, response);
  });
}

TEST(LifecycleTest, KvExhaustionPreemptsAndEveryRequestCompletes) {
  TestModel model;
  // 8 blocks of 16 tokens: one 64-token request fits, eight at once do not.
  const int64_t kv_bytes = model.KvBytesPerToken() * kBlockSize * 8;
  nlohmann::json config = ServerConfigJson(model, OneDeployment());
  config["kv_cache_bytes"] = kv_bytes;
  WriteJson(model.Join("server.json"), config);
  std::unique_ptr<ServerProcess> server = StartServer(model.Join("server.json"));
  ASSERT_NE(server, nullptr);

  constexpr int kRequests = 8;
  constexpr int kTokens = 56;
  std::vector<std::future<std::pair<grpc::Status, v1::GenerateResponse>>> results;
  for (int i = 0; i < kRequests; ++i) {
    results.push_back(GenerateAsync(server->address(), IdsRequest("default", Prompt(i), kTokens)));
  }
  for (int i = 0; i < kRequests; ++i) {
    auto [status, response] = results[i].get();
    ASSERT_TRUE(status.ok()) << i << ": " << status.error_message() << "\n" << server->Logs();
    EXPECT_EQ(response.tokens_size(), kTokens);
    EXPECT_EQ(response.finish_reason(), v1::FINISH_REASON_LENGTH);
    // With the `never` policy a preempted sequence recomputes exactly.
    EXPECT_EQ(TokenIds(response.tokens()),
              TokenIds(model.Expected(EngineRequest(Prompt(i), kTokens), kv_bytes)))
        << "request " << i;
  }
  absl::StatusOr<std::string> text = HttpGet(server->metrics_address(), "/metrics");
  ASSERT_TRUE(text.ok()) << text.status();
  absl::StatusOr<double> preemptions = MetricValue(*text, "loopserve_preemptions_total");
  ASSERT_TRUE(preemptions.ok()) << preemptions.status();
  EXPECT_GT(*preemptions, 0) << "the pool was never exhausted; make it smaller";
  EXPECT_EQ(*MetricValue(*text, "loopserve_kv_blocks_capacity"), 8);
  EXPECT_EQ(server->Terminate(std::chrono::seconds(20)), 0) << server->Logs();
}

// A stream that has received its first message, read to its end on a
// thread of its own.
class BackgroundStream {
 public:
  BackgroundStream(const std::string& address, const v1::GenerateRequest& request)
      : stub_(LoopServeStub(address)) {
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    reader_ = stub_->GenerateStream(&context_, request);
    v1::GenerateStreamResponse msg;
    if (reader_->Read(&msg)) tokens_ += msg.tokens_size();
    thread_ = std::thread([this] {
      v1::GenerateStreamResponse m;
      while (reader_->Read(&m)) tokens_ += m.tokens_size();
      status_ = reader_->Finish();
    });
  }
  // Waits for the end: the stream's status and how many tokens it got.
  std::pair<grpc::Status, int> Wait() {
    thread_.join();
    return {status_, tokens_};
  }

 private:
  std::unique_ptr<v1::LoopServe::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::GenerateStreamResponse>> reader_;
  int tokens_ = 0;
  grpc::Status status_;
  std::thread thread_;
};

// `in_flight` of the server's "draining" log line (-1 when absent).
int InFlightAtDrain(const std::string& logs) {
  const size_t at = logs.find("\"msg\":\"draining\"");
  if (at == std::string::npos) return -1;
  const size_t eol = logs.find('\n', at);
  const std::string line = logs.substr(at, eol - at);
  const std::string key = "\"in_flight\":";
  const size_t k = line.find(key);
  return k == std::string::npos ? -1 : std::atoi(line.c_str() + k + key.size());
}

TEST(LifecycleTest, DrainCancelsAfterGraceAndReportsNotServing) {
  TestModel model;
  WriteJson(model.Join("server.json"), ServerConfigJson(model, OneDeployment()));
  std::unique_ptr<ServerProcess> server = StartServer(model.Join("server.json"));
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(Health(server->address(), ""), HealthResponse::SERVING);
  EXPECT_EQ(Health(server->address(), "loopserve.v1.LoopServe"), HealthResponse::SERVING);

  // Long streams still running when the (zero) grace period ends.
  constexpr int kStreams = 12;
  std::vector<std::unique_ptr<BackgroundStream>> streams;
  for (int i = 0; i < kStreams; ++i) {
    streams.push_back(std::make_unique<BackgroundStream>(server->address(),
                                                         IdsRequest("default", Prompt(i), 900)));
  }
  auto admin = AdminStub(server->address());
  v1::DrainRequest drain;
  drain.set_grace_seconds(0);
  v1::DrainResponse drained;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(admin->Drain(&context, drain, &drained).ok());
  }
  EXPECT_GT(drained.cancelled(), 0);
  int cancelled = 0;
  for (auto& stream : streams) {
    auto [status, tokens] = stream->Wait();
    if (status.ok()) {
      EXPECT_EQ(tokens, 900);
    } else {
      ++cancelled;
      EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
      EXPECT_LT(tokens, 900);
    }
  }
  EXPECT_EQ(cancelled, drained.cancelled());

  EXPECT_EQ(Health(server->address(), ""), HealthResponse::NOT_SERVING);
  EXPECT_EQ(Health(server->address(), "loopserve.v1.LoopServe"), HealthResponse::NOT_SERVING);
  auto stub = LoopServeStub(server->address());
  grpc::ClientContext context;
  v1::GenerateResponse refused;
  const grpc::Status s = stub->Generate(&context, IdsRequest("default", Prompt(2), 4), &refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_THAT(s.error_message(), ::testing::HasSubstr("draining"));
  EXPECT_EQ(server->Terminate(std::chrono::seconds(20)), 0) << server->Logs();
}

TEST(LifecycleTest, SigtermFinishesInFlightThenExitsZero) {
  TestModel model;
  nlohmann::json config = ServerConfigJson(model, OneDeployment());
  // A grace no run can outlast (the default 10 s is outlasted under TSan's
  // slowdown): this test is about finishing in-flight work, not cutting it.
  config["drain_grace_seconds"] = 300;
  WriteJson(model.Join("server.json"), config);
  std::unique_ptr<ServerProcess> server = StartServer(model.Join("server.json"));
  ASSERT_NE(server, nullptr);
  constexpr int kStreams = 4;
  std::vector<std::unique_ptr<BackgroundStream>> streams;
  for (int i = 0; i < kStreams; ++i) {
    streams.push_back(std::make_unique<BackgroundStream>(server->address(),
                                                         IdsRequest("default", Prompt(i), 900)));
  }
  EXPECT_EQ(server->Terminate(std::chrono::seconds(300)), 0) << server->Logs();
  for (auto& stream : streams) {
    auto [status, tokens] = stream->Wait();
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(tokens, 900);
  }
  const std::string logs = server->Logs();
  EXPECT_GT(InFlightAtDrain(logs), 0) << "nothing was in flight at SIGTERM:\n" << logs;
  EXPECT_THAT(logs, ::testing::HasSubstr("\"msg\":\"server stopped\""));
}

TEST(LifecycleTest, BadConfigFailsWithTheFieldNamed) {
  TestModel model;
  nlohmann::json config = ServerConfigJson(model, OneDeployment());
  config["max_batch_tokens"] = 0;
  WriteJson(model.Join("bad.json"), config);
  absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(
      LOOPSERVE_SERVER_BINARY, {"--config=" + model.Join("bad.json")}, model.Join("bad.log"));
  EXPECT_FALSE(server.ok());
  EXPECT_THAT(std::string(server.status().message()), ::testing::HasSubstr("max_batch_tokens"));
}

}  // namespace
}  // namespace loopserve::testing

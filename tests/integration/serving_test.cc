// Integration tests of loopserve-server over gRPC on loopback: one real
// server process (tests/integration/server_process) over a small random
// checkpoint with four deployments. Greedy generations must equal an
// in-process Engine's; concurrency, cancellation, deadlines, malformed
// requests, Admin policy changes, health and metrics are checked end to end.
#include <chrono>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "tests/integration/test_model.h"

namespace loopserve::testing {
namespace {

using ::testing::HasSubstr;
using HealthRequest = grpc::health::v1::HealthCheckRequest;
using HealthResponse = grpc::health::v1::HealthCheckResponse;

constexpr double kFastThreshold = 0.05;

// The "fast" deployment's policy: exits early on this checkpoint.
ExitPolicy FastPolicy() {
  ExitPolicy p;
  p.criterion = ExitCriterion::kMaxProb;
  p.threshold = kFastThreshold;
  return p;
}

nlohmann::json Deployments() {
  return nlohmann::json::array(
      {{{"name", "default"},
        {"default_max_tokens", 8},
        {"limits", {{"max_tokens", 900}, {"max_prompt_tokens", 32}}}},
       {{"name", "fast"},
        {"exit_policy", ExitPolicyToJson(FastPolicy())},
        {"limits", {{"max_tokens", 64}}}},
       {{"name", "open"}, {"limits", {{"max_tokens", 64}, {"allow_exit_overrides", true}}}},
       {{"name", "tunable"}, {"limits", {{"max_tokens", 64}}}}});
}

class ServingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new TestModel();
    const std::string config = model_->Join("server.json");
    WriteJson(config, ServerConfigJson(*model_, Deployments()));
    server_ = StartServer(config).release();
  }
  static void TearDownTestSuite() {
    if (server_ != nullptr) {
      EXPECT_EQ(server_->Terminate(std::chrono::seconds(20)), 0) << server_->Logs();
    }
    delete server_;
    delete model_;
    server_ = nullptr;
    model_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    stub_ = LoopServeStub(server_->address());
  }

  static GenerationRequest EngineRequest(const std::vector<int32_t>& prompt, int max_tokens,
                                         const ExitPolicy& policy = {}) {
    GenerationRequest r;
    r.prompt = prompt;
    r.max_tokens = max_tokens;
    r.policy = policy;
    return r;
  }

  grpc::Status Generate(const v1::GenerateRequest& request, v1::GenerateResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return stub_->Generate(&context, request, response);
  }

  // All messages of a stream, and its status.
  grpc::Status Stream(const v1::GenerateRequest& request,
                      std::vector<v1::GenerateStreamResponse>* messages) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto reader = stub_->GenerateStream(&context, request);
    v1::GenerateStreamResponse msg;
    while (reader->Read(&msg)) messages->push_back(msg);
    return reader->Finish();
  }

  std::string Scrape() {
    absl::StatusOr<std::string> body = HttpGet(server_->metrics_address(), "/metrics");
    EXPECT_TRUE(body.ok()) << body.status();
    return body.ok() ? *body : "";
  }

  // Polls the KV gauge until it reads 0 (the engine publishes it every
  // loop iteration, at least every 50 ms).
  void ExpectKvFreed() {
    double used = -1;
    for (int i = 0; i < 100 && used != 0; ++i) {
      absl::StatusOr<double> v = MetricValue(Scrape(), "loopserve_kv_blocks_used");
      ASSERT_TRUE(v.ok()) << v.status();
      used = *v;
      if (used != 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(used, 0) << "KV blocks still in use after every request ended";
  }

  // The server's "request finished" log line of `request_id` (polled: the
  // line is written on the engine thread as the request ends).
  nlohmann::json FinishedLogLine(const std::string& request_id) {
    for (int i = 0; i < 200; ++i) {
      std::istringstream logs(server_->Logs());
      for (std::string line; std::getline(logs, line);) {
        if (line.find("\"request finished\"") == std::string::npos) continue;
        nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_object() && j.value("request_id", "") == request_id) return j;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "no log line for " << request_id;
    return nlohmann::json::object();
  }

  static TestModel* model_;
  static ServerProcess* server_;
  std::unique_ptr<v1::LoopServe::Stub> stub_;
};

TestModel* ServingTest::model_ = nullptr;
ServerProcess* ServingTest::server_ = nullptr;

TEST_F(ServingTest, HealthIsServing) {
  auto health = HealthStub(server_->address());
  for (const std::string service : {"", "loopserve.v1.LoopServe"}) {
    grpc::ClientContext context;
    HealthRequest request;
    request.set_service(service);
    HealthResponse response;
    ASSERT_TRUE(health->Check(&context, request, &response).ok());
    EXPECT_EQ(response.status(), HealthResponse::SERVING) << service;
  }
}

TEST_F(ServingTest, UnaryGreedyEqualsEngine) {
  for (int i = 0; i < 3; ++i) {
    const GenerationResult expected = model_->Expected(EngineRequest(Prompt(i), 12));
    v1::GenerateResponse response;
    v1::GenerateRequest request = IdsRequest("default", Prompt(i), 12);
    request.set_request_id(absl::StrCat("unary-", i));
    ASSERT_TRUE(Generate(request, &response).ok());
    EXPECT_EQ(TokenIds(response.tokens()), TokenIds(expected));
    EXPECT_EQ(Loops(response.tokens()), Loops(expected));
    EXPECT_EQ(response.request_id(), absl::StrCat("unary-", i));
    EXPECT_EQ(response.deployment(), "default");
    EXPECT_EQ(response.finish_reason(), v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(response.usage().completion_tokens(), 12);
    EXPECT_EQ(response.usage().prompt_tokens(), static_cast<int64_t>(Prompt(i).size()));
    EXPECT_EQ(response.usage().loops_executed(), expected.usage.loops_executed);
    EXPECT_EQ(response.usage().loops_full_depth(), expected.usage.loops_full);
    EXPECT_NEAR(response.usage().compute_saved(), expected.usage.ComputeSaved(), 1e-9);
    for (int j = 0; j < response.tokens_size(); ++j) {
      EXPECT_NEAR(response.tokens(j).logprob(), expected.tokens[j].logprob, 1e-6);
    }
  }
}

TEST_F(ServingTest, DefaultDeploymentAndDefaultMaxTokens) {
  v1::GenerateRequest request = IdsRequest("", Prompt(5), 1);
  request.clear_max_tokens();  // deployment default: 8
  v1::GenerateResponse response;
  ASSERT_TRUE(Generate(request, &response).ok());
  EXPECT_EQ(response.deployment(), "default");
  EXPECT_EQ(response.tokens_size(), 8);
  EXPECT_EQ(TokenIds(response.tokens()), TokenIds(model_->Expected(EngineRequest(Prompt(5), 8))));
  EXPECT_FALSE(response.request_id().empty());
}

TEST_F(ServingTest, EarlyExitDeploymentEqualsEngine) {
  int early = 0;
  for (int i = 0; i < 3; ++i) {
    const GenerationResult expected = model_->Expected(EngineRequest(Prompt(i), 16, FastPolicy()));
    v1::GenerateResponse response;
    ASSERT_TRUE(Generate(IdsRequest("fast", Prompt(i), 16), &response).ok());
    EXPECT_EQ(TokenIds(response.tokens()), TokenIds(expected));
    EXPECT_EQ(Loops(response.tokens()), Loops(expected));
    for (const v1::GeneratedToken& t : response.tokens()) early += t.loops() < kLoops;
    EXPECT_GT(response.usage().compute_saved(), 0);
  }
  EXPECT_GT(early, 0) << "the fast deployment never exited early";
}

TEST_F(ServingTest, StreamGreedyEqualsEngine) {
  for (int i = 0; i < 3; ++i) {
    const GenerationResult expected = model_->Expected(EngineRequest(Prompt(i), 16, FastPolicy()));
    std::vector<v1::GenerateStreamResponse> messages;
    v1::GenerateRequest request = IdsRequest("fast", Prompt(i), 16);
    request.set_request_id("stream-id");
    ASSERT_TRUE(Stream(request, &messages).ok());
    ASSERT_FALSE(messages.empty());
    std::vector<int32_t> ids;
    std::vector<int> loops;
    for (size_t m = 0; m < messages.size(); ++m) {
      EXPECT_EQ(messages[m].request_id(), "stream-id");
      const bool last = m + 1 == messages.size();
      EXPECT_EQ(messages[m].finish_reason() != v1::FINISH_REASON_UNSPECIFIED, last);
      for (int x : TokenIds(messages[m].tokens())) ids.push_back(x);
      for (int x : Loops(messages[m].tokens())) loops.push_back(x);
    }
    EXPECT_EQ(ids, TokenIds(expected));
    EXPECT_EQ(loops, Loops(expected));
    EXPECT_EQ(messages.back().finish_reason(), v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(messages.back().usage().loops_executed(), expected.usage.loops_executed);
  }
}

TEST_F(ServingTest, StopTokenEndsGeneration) {
  const GenerationResult expected = model_->Expected(EngineRequest(Prompt(2), 12));
  v1::GenerateRequest request = IdsRequest("default", Prompt(2), 12);
  request.add_stop_token_ids(expected.tokens[3].token);
  v1::GenerateResponse response;
  ASSERT_TRUE(Generate(request, &response).ok());
  EXPECT_EQ(response.finish_reason(), v1::FINISH_REASON_STOP);
  ASSERT_GE(response.tokens_size(), 1);
  EXPECT_LE(response.tokens_size(), 4);
  EXPECT_EQ(response.tokens(response.tokens_size() - 1).token_id(), expected.tokens[3].token);
}

TEST_F(ServingTest, ManyConcurrentRequestsAllCorrect) {
  constexpr int kRequests = 40;
  std::vector<std::vector<int32_t>> expected(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    expected[i] = TokenIds(model_->Expected(EngineRequest(Prompt(i), 10)));
  }
  std::vector<std::vector<int32_t>> got(kRequests);
  std::vector<grpc::Status> status(kRequests);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRequests; ++i) {
    threads.emplace_back([&, i] {
      auto stub = LoopServeStub(server_->address());
      const v1::GenerateRequest request = IdsRequest("default", Prompt(i), 10);
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      if (i % 2 == 0) {
        v1::GenerateResponse response;
        status[i] = stub->Generate(&context, request, &response);
        got[i] = TokenIds(response.tokens());
      } else {
        auto reader = stub->GenerateStream(&context, request);
        v1::GenerateStreamResponse msg;
        while (reader->Read(&msg)) {
          for (int32_t x : TokenIds(msg.tokens())) got[i].push_back(x);
        }
        status[i] = reader->Finish();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kRequests; ++i) {
    EXPECT_TRUE(status[i].ok()) << i << ": " << status[i].error_message();
    EXPECT_EQ(got[i], expected[i]) << "request " << i;
  }
  ExpectKvFreed();
}

TEST_F(ServingTest, ClientCancelMidStreamFreesKv) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::GenerateRequest request = IdsRequest("default", Prompt(1), 900);
  request.set_request_id("cancel-me");
  auto reader = stub_->GenerateStream(&context, request);
  v1::GenerateStreamResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  EXPECT_GT(msg.tokens_size(), 0);
  context.TryCancel();
  int64_t received = msg.tokens_size();
  while (reader->Read(&msg)) received += msg.tokens_size();
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_LT(received, 900);
  // The server ended it early (not at 900 tokens) and freed its KV.
  const nlohmann::json line = FinishedLogLine("cancel-me");
  EXPECT_EQ(line.value("status", ""), "CANCELLED") << line.dump();
  EXPECT_LT(line.value("completion_tokens", 900), 900) << line.dump();
  ExpectKvFreed();
  // The server keeps serving.
  v1::GenerateResponse response;
  EXPECT_TRUE(Generate(IdsRequest("default", Prompt(1), 4), &response).ok());
}

TEST_F(ServingTest, DeadlineIsHonoured) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(30));
  v1::GenerateResponse response;
  const auto start = std::chrono::steady_clock::now();
  v1::GenerateRequest request = IdsRequest("default", Prompt(3), 900);
  request.set_request_id("late");
  const grpc::Status status = stub_->Generate(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  const nlohmann::json line = FinishedLogLine("late");
  EXPECT_EQ(line.value("status", ""), "DEADLINE_EXCEEDED") << line.dump();
  EXPECT_LT(line.value("completion_tokens", 900), 900) << line.dump();
  ExpectKvFreed();
  EXPECT_TRUE(Generate(IdsRequest("default", Prompt(3), 4), &response).ok());
}

struct BadCase {
  std::string name;
  v1::GenerateRequest request;
  grpc::StatusCode code;
  std::string message;
};

TEST_F(ServingTest, MalformedRequestsGetClearErrors) {
  std::vector<BadCase> cases;
  auto add = [&](std::string name, v1::GenerateRequest r, grpc::StatusCode code,
                 std::string message) {
    cases.push_back({std::move(name), std::move(r), code, std::move(message)});
  };
  const std::vector<int32_t> ok = Prompt(0);
  add("unknown deployment", IdsRequest("nope", ok, 4), grpc::StatusCode::NOT_FOUND,
      "unknown deployment `nope`");
  add("empty prompt", IdsRequest("default", {}, 4), grpc::StatusCode::INVALID_ARGUMENT,
      "prompt is empty");
  {
    v1::GenerateRequest r;
    r.set_deployment("default");
    add("no prompt", r, grpc::StatusCode::INVALID_ARGUMENT, "prompt is required");
  }
  add("token id >= vocab", IdsRequest("default", {1, kVocab, 2}, 4),
      grpc::StatusCode::INVALID_ARGUMENT, "outside vocabulary");
  add("negative token id", IdsRequest("default", {1, -1}, 4), grpc::StatusCode::INVALID_ARGUMENT,
      "outside vocabulary");
  add("max_tokens 0", IdsRequest("default", ok, 0), grpc::StatusCode::INVALID_ARGUMENT,
      "max_tokens must be >= 1");
  add("max_tokens negative", IdsRequest("default", ok, -3), grpc::StatusCode::INVALID_ARGUMENT,
      "max_tokens must be >= 1");
  add("max_tokens over limit", IdsRequest("fast", ok, 65), grpc::StatusCode::INVALID_ARGUMENT,
      "exceeds deployment `fast` limit of 64");
  add("prompt over limit", IdsRequest("default", std::vector<int32_t>(33, 1), 4),
      grpc::StatusCode::INVALID_ARGUMENT, "allows at most 32");
  {
    v1::GenerateRequest r = IdsRequest("default", ok, 4);
    r.mutable_sampling()->set_temperature(-1);
    add("negative temperature", r, grpc::StatusCode::INVALID_ARGUMENT, "temperature");
  }
  {
    v1::GenerateRequest r = IdsRequest("default", ok, 4);
    r.mutable_sampling()->set_top_p(1.5);
    add("top_p > 1", r, grpc::StatusCode::INVALID_ARGUMENT, "top_p");
  }
  {
    v1::GenerateRequest r = IdsRequest("default", ok, 4);
    r.mutable_sampling()->set_top_p(0);
    add("top_p 0", r, grpc::StatusCode::INVALID_ARGUMENT, "top_p");
  }
  {
    v1::GenerateRequest r = IdsRequest("default", ok, 4);
    r.mutable_sampling()->set_top_k(-2);
    add("negative top_k", r, grpc::StatusCode::INVALID_ARGUMENT, "top_k");
  }
  {
    v1::GenerateRequest r = IdsRequest("default", ok, 4);
    r.mutable_sampling()->set_logprobs(21);
    add("logprobs > 20", r, grpc::StatusCode::INVALID_ARGUMENT, "logprobs");
  }
  {
    v1::GenerateRequest r = IdsRequest("default", ok, 4);
    r.add_stop_token_ids(kVocab + 5);
    add("stop id outside vocab", r, grpc::StatusCode::INVALID_ARGUMENT, "stop_token_ids[0]");
  }
  {
    v1::GenerateRequest r = IdsRequest("default", ok, 4);
    r.mutable_exit_override()->set_threshold(0.5);
    add("override not allowed", r, grpc::StatusCode::PERMISSION_DENIED,
        "does not allow exit overrides");
  }
  {
    v1::GenerateRequest r = IdsRequest("open", ok, 4);
    r.mutable_exit_override()->set_criterion("bogus");
    add("unknown override criterion", r, grpc::StatusCode::INVALID_ARGUMENT,
        "exit_override.criterion");
  }
  {
    v1::GenerateRequest r = IdsRequest("open", ok, 4);
    r.mutable_exit_override()->set_max_loops(kLoops + 1);
    add("override max_loops > L", r, grpc::StatusCode::INVALID_ARGUMENT, "exit_override");
  }
  {
    v1::GenerateRequest r;
    r.set_deployment("default");
    r.set_text("hello");
    r.set_max_tokens(4);
    add("text prompt without tokenizer", r, grpc::StatusCode::FAILED_PRECONDITION,
        "tokenizer.json");
  }
  {
    v1::GenerateRequest r = IdsRequest("default", ok, 4);
    r.add_stop("\n");
    add("stop sequence without tokenizer", r, grpc::StatusCode::FAILED_PRECONDITION, "tokenizer");
  }
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    v1::GenerateResponse response;
    grpc::Status status = Generate(c.request, &response);
    EXPECT_EQ(status.error_code(), c.code) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.message));
    std::vector<v1::GenerateStreamResponse> messages;
    status = Stream(c.request, &messages);
    EXPECT_EQ(status.error_code(), c.code) << status.error_message();
    EXPECT_TRUE(messages.empty());
    // And the server keeps serving.
    ASSERT_TRUE(Generate(IdsRequest("default", ok, 2), &response).ok());
  }
  {
    grpc::ClientContext context;
    v1::TokenizeRequest request;
    request.set_text("hi");
    v1::TokenizeResponse response;
    EXPECT_EQ(stub_->Tokenize(&context, request, &response).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }
}

TEST_F(ServingTest, AllowedOverrideChangesExits) {
  v1::GenerateRequest request = IdsRequest("open", Prompt(4), 8);
  request.mutable_exit_override()->set_max_loops(2);
  v1::GenerateResponse response;
  ASSERT_TRUE(Generate(request, &response).ok());
  ExitPolicy policy;
  policy.max_loops = 2;
  const GenerationResult expected = model_->Expected(EngineRequest(Prompt(4), 8, policy));
  EXPECT_EQ(TokenIds(response.tokens()), TokenIds(expected));
  EXPECT_EQ(Loops(response.tokens()), Loops(expected));
  // The first token comes from the prompt's forward, which runs every loop
  // (later positions need its K/V at every depth); decodes stop at 2.
  for (int j = 1; j < response.tokens_size(); ++j) EXPECT_EQ(response.tokens(j).loops(), 2);
}

TEST_F(ServingTest, AdminPolicyChangeAltersLaterRequests) {
  auto admin = AdminStub(server_->address());
  v1::GenerateResponse before;
  ASSERT_TRUE(Generate(IdsRequest("tunable", Prompt(6), 8), &before).ok());
  EXPECT_EQ(Loops(before.tokens()), std::vector<int>(8, kLoops));

  v1::SetExitPolicyRequest set;
  set.set_deployment("tunable");
  set.mutable_exit_policy()->set_criterion("max_prob");
  set.mutable_exit_policy()->set_threshold(kFastThreshold);
  v1::ExitPolicy applied;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(admin->SetExitPolicy(&context, set, &applied).ok());
  }
  EXPECT_EQ(applied.criterion(), "max_prob");
  EXPECT_EQ(applied.min_loops(), 1);
  {
    grpc::ClientContext context;
    v1::GetExitPolicyRequest get;
    get.set_deployment("tunable");
    v1::ExitPolicy got;
    ASSERT_TRUE(admin->GetExitPolicy(&context, get, &got).ok());
    EXPECT_EQ(got.criterion(), "max_prob");
    EXPECT_DOUBLE_EQ(got.threshold(), kFastThreshold);
  }
  v1::GenerateResponse after;
  ASSERT_TRUE(Generate(IdsRequest("tunable", Prompt(6), 8), &after).ok());
  const GenerationResult expected = model_->Expected(EngineRequest(Prompt(6), 8, FastPolicy()));
  EXPECT_EQ(Loops(after.tokens()), Loops(expected));
  EXPECT_EQ(TokenIds(after.tokens()), TokenIds(expected));
  EXPECT_LT(after.usage().loops_executed(), before.usage().loops_executed());

  // Invalid policies are refused with the field named; the policy stays.
  set.mutable_exit_policy()->set_max_loops(kLoops + 3);
  {
    grpc::ClientContext context;
    const grpc::Status s = admin->SetExitPolicy(&context, set, &applied);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("max_loops"));
  }
  set.mutable_exit_policy()->set_max_loops(0);
  set.mutable_exit_policy()->set_criterion("sometimes");
  {
    grpc::ClientContext context;
    const grpc::Status s = admin->SetExitPolicy(&context, set, &applied);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("criterion"));
  }
  set.set_deployment("nope");
  set.mutable_exit_policy()->set_criterion("never");
  {
    grpc::ClientContext context;
    EXPECT_EQ(admin->SetExitPolicy(&context, set, &applied).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  v1::ListDeploymentsResponse list;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->ListDeployments(&context, {}, &list).ok());
  }
  EXPECT_EQ(list.default_deployment(), "default");
  ASSERT_EQ(list.deployments_size(), 4);
  for (const v1::DeploymentInfo& d : list.deployments()) {
    if (d.name() == "tunable") {
      EXPECT_EQ(d.exit_policy().criterion(), "max_prob");
    } else if (d.name() == "open") {
      EXPECT_TRUE(d.allow_exit_overrides());
    } else if (d.name() == "default") {
      EXPECT_EQ(d.max_tokens_limit(), 900);
    }
  }
}

TEST_F(ServingTest, ModelInfoDescribesTheModel) {
  grpc::ClientContext context;
  v1::ModelInfoResponse info;
  ASSERT_TRUE(stub_->ModelInfo(&context, {}, &info).ok());
  EXPECT_EQ(info.num_loops(), kLoops);
  EXPECT_EQ(info.vocab_size(), kVocab);
  EXPECT_EQ(info.num_experts(), 4);
  EXPECT_EQ(info.num_experts_per_tok(), 2);
  EXPECT_EQ(info.num_recurrent_layers(), 2);
  EXPECT_GT(info.parameters(), 0);
  EXPECT_GE(info.weight_bytes(), info.parameters() * 4);
  EXPECT_EQ(info.kv_bytes_per_token(), model_->KvBytesPerToken());
  EXPECT_GT(info.kv_blocks_total(), 0);
  EXPECT_EQ(info.kv_block_size(), kBlockSize);
  EXPECT_FALSE(info.has_tokenizer());
  EXPECT_EQ(info.backend(), "cpu");
  EXPECT_THAT(info.config_json(), HasSubstr("\"num_loops\":4"));
}

TEST_F(ServingTest, MetricsAreExposed) {
  v1::GenerateResponse response;
  ASSERT_TRUE(Generate(IdsRequest("fast", Prompt(2), 4), &response).ok());
  const std::string text = Scrape();
  for (const char* name : {"loopserve_requests_total", "loopserve_generated_tokens_total",
                           "loopserve_kv_blocks_capacity", "loopserve_kv_blocks_used"}) {
    absl::StatusOr<double> v = MetricValue(text, name);
    EXPECT_TRUE(v.ok()) << name << ": " << v.status();
  }
  EXPECT_GT(*MetricValue(text, "loopserve_requests_total"), 0);
  EXPECT_GT(*MetricValue(text, "loopserve_kv_blocks_capacity"), 0);
}

}  // namespace
}  // namespace loopserve::testing

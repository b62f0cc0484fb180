// TLS and API keys against the real server binary on 127.0.0.1, with a test
// CA made by the openssl CLI at test time (skipped without openssl). Every
// outcome has its status code: no key / wrong key UNAUTHENTICATED, a key on
// a deployment or on Admin it may not use PERMISSION_DENIED, over its rate
// or concurrency RESOURCE_EXHAUSTED with `retry-after-ms`; health open;
// plaintext or untrusting clients cannot talk to the TLS port; mTLS refuses
// clients without a certificate from its CA; keys never reach the log;
// SIGHUP swaps the keys in without a restart and refuses a bad file.
#include <signal.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "server/api_keys.h"
#include "tests/integration/test_model.h"
#include "tests/integration/test_pki.h"

namespace loopserve::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// The secrets the clients present; the config holds only their SHA-256.
constexpr char kUserKey[] = "lsk_user_0123456789abcdef";
constexpr char kOpsKey[] = "lsk_ops_fedcba9876543210";
constexpr char kLimitedKey[] = "lsk_limited_5555";
constexpr char kNarrowKey[] = "lsk_narrow_7777";
constexpr char kWrongKey[] = "lsk_wrong_0000";

nlohmann::json Deployments() {
  return nlohmann::json::array({{{"name", "default"}, {"limits", {{"max_tokens", 900}}}},
                                {{"name", "fast"}, {"limits", {{"max_tokens", 64}}}}});
}

nlohmann::json Key(const std::string& name, const std::string& secret, nlohmann::json deployments) {
  return {{"name", name}, {"sha256", Sha256Hex(secret)}, {"deployments", deployments}};
}

nlohmann::json ApiKeys() {
  nlohmann::json ops = Key("ops", kOpsKey, {"*"});
  ops["admin"] = true;
  nlohmann::json limited = Key("limited", kLimitedKey, {"*"});
  limited["requests_per_second"] = 0.01;  // one token per 100 s: never refills mid-test
  limited["burst"] = 2;
  nlohmann::json narrow = Key("narrow", kNarrowKey, {"default"});
  narrow["max_concurrent"] = 1;
  return {Key("user", kUserKey, {"default"}), ops, limited, narrow};
}

std::unique_ptr<grpc::ClientContext> Context(const std::string& key = "") {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  if (!key.empty()) context->AddMetadata("authorization", std::string("Bearer ") + key);
  return context;
}

// The `retry-after-ms` trailing metadata of a finished call (-1 = none).
int64_t RetryAfterMs(const grpc::ClientContext& context) {
  const auto& trailers = context.GetServerTrailingMetadata();
  auto it = trailers.find("retry-after-ms");
  if (it == trailers.end()) return -1;
  return std::stoll(std::string(it->second.data(), it->second.size()));
}

class ServerSecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!HaveOpenssl()) return;
    model_ = new TestModel();
    absl::StatusOr<TestPki> pki = MakeTestPki(model_->dir());
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = new TestPki(*pki);
    nlohmann::json config = ServerConfigJson(*model_, Deployments());
    config["tls"] = {{"cert_file", pki_->server_cert}, {"key_file", pki_->server_key}};
    config["api_keys"] = ApiKeys();
    WriteJson(model_->Join("tls.json"), config);
    server_ = StartServer(model_->Join("tls.json")).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete pki_;
    delete model_;
    server_ = nullptr;
    pki_ = nullptr;
    model_ = nullptr;
  }
  void SetUp() override {
    if (!HaveOpenssl()) GTEST_SKIP() << "no openssl CLI to make the test CA";
    ASSERT_NE(server_, nullptr);
  }

  std::shared_ptr<grpc::Channel> Channel() const {
    return TlsChannel(server_->address(), pki_->ca_cert);
  }
  std::unique_ptr<v1::LoopServe::Stub> Stub() const { return v1::LoopServe::NewStub(Channel()); }

  grpc::Status Generate(const std::string& key, const std::string& deployment,
                        v1::GenerateResponse* response = nullptr) const {
    v1::GenerateResponse scratch;
    auto context = Context(key);
    return Stub()->Generate(context.get(), IdsRequest(deployment, Prompt(1), 4),
                            response != nullptr ? response : &scratch);
  }

  static TestModel* model_;
  static TestPki* pki_;
  static ServerProcess* server_;
};

TestModel* ServerSecurityTest::model_ = nullptr;
TestPki* ServerSecurityTest::pki_ = nullptr;
ServerProcess* ServerSecurityTest::server_ = nullptr;

TEST_F(ServerSecurityTest, MissingOrWrongKeyIsUnauthenticated) {
  for (const std::string key : {"", kWrongKey}) {
    SCOPED_TRACE(key);
    grpc::Status s = Generate(key, "default");
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
    // The streaming call and the info calls need a key too.
    auto context = Context(key);
    auto reader = Stub()->GenerateStream(context.get(), IdsRequest("default", Prompt(1), 4));
    v1::GenerateStreamResponse message;
    EXPECT_FALSE(reader->Read(&message));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
    auto info_context = Context(key);
    v1::ModelInfoResponse info;
    EXPECT_EQ(Stub()->ModelInfo(info_context.get(), {}, &info).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    auto admin_context = Context(key);
    v1::ExitPolicy policy;
    EXPECT_EQ(
        v1::Admin::NewStub(Channel())->GetExitPolicy(admin_context.get(), {}, &policy).error_code(),
        grpc::StatusCode::UNAUTHENTICATED);
  }
  // A malformed header is no better than none.
  auto context = Context();
  context->AddMetadata("authorization", std::string("Basic ") + kUserKey);
  v1::GenerateResponse response;
  EXPECT_EQ(
      Stub()->Generate(context.get(), IdsRequest("default", Prompt(1), 4), &response).error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ServerSecurityTest, KeyServesOnlyItsDeploymentsOverTls) {
  v1::GenerateResponse response;
  grpc::Status s = Generate(kUserKey, "default", &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  GenerationRequest expected;
  expected.prompt = Prompt(1);
  expected.max_tokens = 4;
  EXPECT_EQ(TokenIds(response.tokens()), TokenIds(model_->Expected(expected)));

  s = Generate(kUserKey, "fast");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("`user` may not use deployment `fast`"));
  // An empty deployment means the default one, which this key may use.
  EXPECT_TRUE(Generate(kUserKey, "").ok());
  // Info calls are open to any valid key.
  auto context = Context(kUserKey);
  v1::ListDeploymentsResponse list;
  EXPECT_TRUE(Stub()->ListDeployments(context.get(), {}, &list).ok());
}

TEST_F(ServerSecurityTest, AdminNeedsAnAdminKey) {
  auto admin = v1::Admin::NewStub(Channel());
  v1::GetExitPolicyRequest request;
  request.set_deployment("default");
  v1::ExitPolicy policy;
  auto user = Context(kUserKey);
  grpc::Status s = admin->GetExitPolicy(user.get(), request, &policy);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("Admin"));
  v1::SetExitPolicyRequest set;
  set.set_deployment("default");
  set.mutable_exit_policy()->set_criterion("never");
  auto user_set = Context(kUserKey);
  EXPECT_EQ(admin->SetExitPolicy(user_set.get(), set, &policy).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  auto user_drain = Context(kUserKey);
  v1::DrainResponse drained;
  EXPECT_EQ(admin->Drain(user_drain.get(), {}, &drained).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  auto ops = Context(kOpsKey);
  s = admin->GetExitPolicy(ops.get(), request, &policy);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(policy.criterion(), "never");
  auto ops_set = Context(kOpsKey);
  s = admin->SetExitPolicy(ops_set.get(), set, &policy);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(ServerSecurityTest, RateLimitIsResourceExhaustedWithRetryHint) {
  // Burst 2, then nothing for 100 s.
  EXPECT_TRUE(Generate(kLimitedKey, "default").ok());
  EXPECT_TRUE(Generate(kLimitedKey, "fast").ok());
  auto context = Context(kLimitedKey);
  v1::GenerateResponse response;
  grpc::Status s = Stub()->Generate(context.get(), IdsRequest("default", Prompt(2), 4), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("rate limit"));
  EXPECT_THAT(s.error_message(), HasSubstr("retry after"));
  const int64_t hint = RetryAfterMs(*context);
  EXPECT_GT(hint, 1000);
  EXPECT_LE(hint, 100000);
  // Other keys are untouched by this key's limit.
  EXPECT_TRUE(Generate(kUserKey, "default").ok());
}

TEST_F(ServerSecurityTest, ConcurrencyLimitHoldsWhileAStreamRuns) {
  auto stream_context = Context(kNarrowKey);
  auto reader = Stub()->GenerateStream(stream_context.get(), IdsRequest("default", Prompt(3), 900));
  v1::GenerateStreamResponse message;
  ASSERT_TRUE(reader->Read(&message));  // the stream is running and holds the slot

  auto context = Context(kNarrowKey);
  v1::GenerateResponse response;
  grpc::Status s = Stub()->Generate(context.get(), IdsRequest("default", Prompt(4), 4), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("in flight (max 1)"));
  EXPECT_GT(RetryAfterMs(*context), 0);

  stream_context->TryCancel();
  while (reader->Read(&message)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The cancelled stream gives its slot back once the engine drops it.
  grpc::Status after;
  for (int attempt = 0; attempt < 100; ++attempt) {
    after = Generate(kNarrowKey, "default");
    if (after.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(after.ok()) << after.error_message();
  // Sequential calls never trip the limit: the slot is free before the reply.
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(Generate(kNarrowKey, "default").ok()) << i;
}

TEST_F(ServerSecurityTest, HealthStaysOpenForProbes) {
  auto health = grpc::health::v1::Health::NewStub(Channel());
  auto context = Context();
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status s = health->Check(context.get(), request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(ServerSecurityTest, PlaintextOrUntrustingClientsCannotConnect) {
  auto plaintext = v1::LoopServe::NewStub(
      grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  auto context = Context(kUserKey);
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::GenerateResponse response;
  grpc::Status s =
      plaintext->Generate(context.get(), IdsRequest("default", Prompt(1), 4), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();

  // A client that does not trust the server's CA refuses the handshake.
  auto untrusting = v1::LoopServe::NewStub(TlsChannel(server_->address(), pki_->rogue_ca_cert));
  auto context2 = Context(kUserKey);
  context2->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  s = untrusting->Generate(context2.get(), IdsRequest("default", Prompt(1), 4), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

// ctest runs each test in a process (and server) of its own, so this test
// sends every key itself, accepted and refused.
TEST_F(ServerSecurityTest, KeysNeverAppearInTheLog) {
  ASSERT_TRUE(Generate(kUserKey, "default").ok());
  EXPECT_FALSE(Generate(kWrongKey, "default").ok());
  EXPECT_FALSE(Generate(kUserKey, "fast").ok());
  EXPECT_TRUE(Generate(kOpsKey, "fast").ok());
  EXPECT_TRUE(Generate(kNarrowKey, "default").ok());
  for (int i = 0; i < 3; ++i) Generate(kLimitedKey, "default");  // the last one refused
  auto admin_context = Context(kUserKey);
  v1::ExitPolicy policy;
  EXPECT_FALSE(v1::Admin::NewStub(Channel())->GetExitPolicy(admin_context.get(), {}, &policy).ok());
  const std::string logs = server_->Logs();
  for (const char* secret : {kUserKey, kOpsKey, kLimitedKey, kNarrowKey, kWrongKey}) {
    EXPECT_THAT(logs, Not(HasSubstr(secret)));
  }
  EXPECT_THAT(logs, Not(HasSubstr("Bearer lsk")));
  // The key's name is what identifies the caller.
  EXPECT_THAT(logs, HasSubstr("\"api_key\":\"user\""));
  EXPECT_THAT(logs, HasSubstr("call refused"));
  EXPECT_THAT(logs, HasSubstr("\"tls\":true"));
  // Loopback with TLS and keys: no exposure warning.
  EXPECT_THAT(logs, Not(HasSubstr("non-loopback")));
}

// mTLS with the files read once, or (reload_interval_seconds > 0) served
// from the reloader's private copies: only a certificate from the CA admits.
void ExpectClientCertificateRequired(int reload_interval_seconds) {
  TestModel model;
  absl::StatusOr<TestPki> pki = MakeTestPki(model.dir());
  ASSERT_TRUE(pki.ok()) << pki.status();
  nlohmann::json config = ServerConfigJson(model, Deployments());
  config["tls"] = {{"cert_file", pki->server_cert},
                   {"key_file", pki->server_key},
                   {"client_ca_file", pki->ca_cert},
                   {"reload_interval_seconds", reload_interval_seconds}};
  WriteJson(model.Join("mtls.json"), config);
  std::unique_ptr<ServerProcess> server = StartServer(model.Join("mtls.json"));
  ASSERT_NE(server, nullptr);

  auto call = [&](std::shared_ptr<grpc::Channel> channel) {
    auto context = Context();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::GenerateResponse response;
    return v1::LoopServe::NewStub(channel)->Generate(
        context.get(), IdsRequest("default", Prompt(1), 4), &response);
  };
  // No API keys configured: the certificate alone admits.
  grpc::Status s =
      call(TlsChannel(server->address(), pki->ca_cert, pki->client_cert, pki->client_key));
  EXPECT_TRUE(s.ok()) << s.error_message();
  s = call(TlsChannel(server->address(), pki->ca_cert));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  s = call(TlsChannel(server->address(), pki->ca_cert, pki->rogue_cert, pki->rogue_key));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_EQ(server->Terminate(std::chrono::seconds(20)), 0);
}

TEST(ServerMutualTlsTest, ClientCertificateFromTheCaIsRequired) {
  if (!HaveOpenssl()) GTEST_SKIP() << "no openssl CLI to make the test CA";
  ExpectClientCertificateRequired(0);
}

TEST(ServerMutualTlsTest, ReloadingServerStillRequiresAClientCertificate) {
  if (!HaveOpenssl()) GTEST_SKIP() << "no openssl CLI to make the test CA";
  ExpectClientCertificateRequired(60);
}

TEST(ServerMutualTlsTest, BadTlsFilesStopTheServerNamingTheFile) {
  if (!HaveOpenssl()) GTEST_SKIP() << "no openssl CLI to make the test CA";
  TestModel model;
  absl::StatusOr<TestPki> pki = MakeTestPki(model.dir());
  ASSERT_TRUE(pki.ok()) << pki.status();
  struct Case {
    nlohmann::json tls;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{{"cert_file", model.Join("missing.pem")}, {"key_file", pki->server_key}},
            "missing.pem"},
           {{{"cert_file", pki->server_key}, {"key_file", pki->server_key}}, "no PEM certificate"},
           {{{"cert_file", pki->server_cert}, {"key_file", pki->client_key}},
            "does not match the certificate"},
       }) {
    nlohmann::json config = ServerConfigJson(model, Deployments());
    config["tls"] = c.tls;
    WriteJson(model.Join("bad_tls.json"), config);
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::Start(LOOPSERVE_SERVER_BINARY, {"--config=" + model.Join("bad_tls.json")},
                             model.Join("bad_tls.log"));
    ASSERT_FALSE(server.ok()) << c.message;
    EXPECT_THAT(ReadFile(model.Join("bad_tls.log")), HasSubstr(c.message));
  }
}

TEST(ServerExposureTest, WarnsWhenOpenOnANonLoopbackAddress) {
  TestModel model;
  nlohmann::json config = ServerConfigJson(model, Deployments());
  config["listen_address"] = "0.0.0.0:0";
  WriteJson(model.Join("open.json"), config);
  absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(
      LOOPSERVE_SERVER_BINARY, {"--config=" + model.Join("open.json")}, model.Join("open.log"));
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string logs = (*server)->Logs();
  EXPECT_THAT(logs, HasSubstr("TLS is off on a non-loopback address"));
  EXPECT_THAT(logs, HasSubstr("no API keys configured on a non-loopback address"));
  EXPECT_EQ((*server)->Terminate(std::chrono::seconds(20)), 0);
}

double ReloadMetric(const ServerProcess& server, const std::string& name) {
  absl::StatusOr<std::string> body = HttpGet(server.metrics_address(), "/metrics");
  if (!body.ok()) return -1;
  absl::StatusOr<double> value = MetricValue(*body, name);
  return value.ok() ? *value : -1;
}

TEST(ServerKeyReloadTest, SighupRevokesAddsAndRotatesKeysWithoutARestart) {
  constexpr char kKeepKey[] = "lsk_keep_1111";
  constexpr char kRevokedKey[] = "lsk_revoked_2222";
  constexpr char kOldSecret[] = "lsk_rotating_old_3333";
  constexpr char kNewSecret[] = "lsk_rotating_new_4444";
  constexpr char kAddedKey[] = "lsk_added_5555";
  TestModel model;
  const std::string path = model.Join("reload.json");
  nlohmann::json config = ServerConfigJson(model, Deployments());
  config["api_keys"] = {Key("keep", kKeepKey, {"*"}), Key("revoked", kRevokedKey, {"*"}),
                        Key("rotating", kOldSecret, {"*"})};
  WriteJson(path, config);
  std::unique_ptr<ServerProcess> server = StartServer(path);
  ASSERT_NE(server, nullptr);
  auto generate = [&](const std::string& key) {
    v1::GenerateResponse response;
    auto context = Context(key);
    return LoopServeStub(server->address())
        ->Generate(context.get(), IdsRequest("default", Prompt(2), 3), &response)
        .error_code();
  };
  for (const char* key : {kKeepKey, kRevokedKey, kOldSecret}) {
    ASSERT_EQ(generate(key), grpc::StatusCode::OK) << key;
  }
  EXPECT_EQ(generate(kAddedKey), grpc::StatusCode::UNAUTHENTICATED);

  // Revoke one key, rotate another's secret under the same name, add one.
  config["api_keys"] = {Key("keep", kKeepKey, {"*"}), Key("rotating", kNewSecret, {"*"}),
                        Key("added", kAddedKey, {"default"})};
  WriteJson(path, config);
  ASSERT_TRUE(server->Signal(SIGHUP));
  ASSERT_TRUE(Eventually([&] { return generate(kAddedKey) == grpc::StatusCode::OK; }))
      << server->Logs();
  EXPECT_EQ(generate(kKeepKey), grpc::StatusCode::OK);
  EXPECT_EQ(generate(kNewSecret), grpc::StatusCode::OK);
  EXPECT_EQ(generate(kRevokedKey), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(generate(kOldSecret), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ReloadMetric(*server, "loopserve_config_last_reload_successful"), 1);

  // A file that no longer parses, then one without keys (which would turn
  // authentication off): both refused, the running keys stay.
  { std::ofstream(path) << "{\"api_keys\": ["; }
  ASSERT_TRUE(server->Signal(SIGHUP));
  ASSERT_TRUE(Eventually([&] {
    return ReloadMetric(*server, "loopserve_config_last_reload_successful") == 0;
  }));
  config.erase("api_keys");
  WriteJson(path, config);
  ASSERT_TRUE(server->Signal(SIGHUP));
  // ok + error reloads: 1 + 2.
  ASSERT_TRUE(
      Eventually([&] { return ReloadMetric(*server, "loopserve_config_reloads_total") == 3; }));
  EXPECT_EQ(ReloadMetric(*server, "loopserve_config_last_reload_successful"), 0);
  EXPECT_EQ(generate(""), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(generate(kRevokedKey), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(generate(kAddedKey), grpc::StatusCode::OK);

  const std::string logs = server->Logs();
  EXPECT_THAT(logs, HasSubstr("config reloaded: API keys replaced"));
  EXPECT_THAT(logs, HasSubstr("\"removed\":[\"revoked\"]"));
  EXPECT_THAT(logs, HasSubstr("\"changed\":[\"rotating\"]"));
  EXPECT_THAT(logs, HasSubstr("would turn authentication off"));
  for (const char* secret : {kKeepKey, kRevokedKey, kOldSecret, kNewSecret, kAddedKey}) {
    EXPECT_THAT(logs, Not(HasSubstr(secret)));
  }
  EXPECT_EQ(server->Terminate(std::chrono::seconds(20)), 0);
}

// The reloading servers' private directories (server/tls_reloader.cc).
std::set<std::string> PrivateTlsCopies() {
  std::set<std::string> dirs;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::filesystem::temp_directory_path())) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("loopserve-tls-", 0) == 0) dirs.insert(name);
  }
  return dirs;
}

TEST(ServerTlsReloadTest, RenewedCertificateIsServedWithoutARestart) {
  if (!HaveOpenssl()) GTEST_SKIP() << "no openssl CLI to make the test CA";
  TestModel model;
  const std::string old_dir = model.Join("pki-old");
  const std::string new_dir = model.Join("pki-new");
  std::filesystem::create_directories(old_dir);
  std::filesystem::create_directories(new_dir);
  absl::StatusOr<TestPki> old_pki = MakeTestPki(old_dir);
  ASSERT_TRUE(old_pki.ok()) << old_pki.status();
  absl::StatusOr<TestPki> new_pki = MakeTestPki(new_dir);  // another CA altogether
  ASSERT_TRUE(new_pki.ok()) << new_pki.status();
  // The paths the server watches, as a certificate manager would renew them.
  const std::string cert = model.Join("live-cert.pem");
  const std::string key = model.Join("live-key.pem");
  auto install = [&](const TestPki& pki) {
    // Write beside, then rename over: a reader never sees half a file.
    std::filesystem::copy_file(pki.server_key, key + ".tmp");
    std::filesystem::copy_file(pki.server_cert, cert + ".tmp");
    std::filesystem::rename(key + ".tmp", key);
    std::filesystem::rename(cert + ".tmp", cert);
  };
  install(*old_pki);
  nlohmann::json config = ServerConfigJson(model, Deployments());
  config["tls"] = {{"cert_file", cert}, {"key_file", key}, {"reload_interval_seconds", 1}};
  WriteJson(model.Join("renew.json"), config);
  const std::set<std::string> copies_before = PrivateTlsCopies();
  std::unique_ptr<ServerProcess> server = StartServer(model.Join("renew.json"));
  ASSERT_NE(server, nullptr);

  // A fresh channel per call: each does its own handshake.
  auto call = [&](const std::string& ca) {
    auto context = Context();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::GenerateResponse response;
    return v1::LoopServe::NewStub(TlsChannel(server->address(), ca))
        ->Generate(context.get(), IdsRequest("default", Prompt(1), 2), &response)
        .error_code();
  };
  ASSERT_EQ(call(old_pki->ca_cert), grpc::StatusCode::OK);
  EXPECT_EQ(call(new_pki->ca_cert), grpc::StatusCode::UNAVAILABLE);

  install(*new_pki);
  ASSERT_TRUE(Eventually([&] { return call(new_pki->ca_cert) == grpc::StatusCode::OK; }))
      << server->Logs();
  EXPECT_EQ(call(old_pki->ca_cert), grpc::StatusCode::UNAVAILABLE);

  EXPECT_EQ(ReloadMetric(*server, "loopserve_tls_reloads_total"), 1);
  EXPECT_GT(ReloadMetric(*server, "loopserve_tls_certificate_expiry_timestamp_seconds"),
            static_cast<double>(std::time(nullptr)));

  // Broken renewals are refused and the last good pair stays in service:
  // a file that is not PEM, then a certificate with someone else's key.
  { std::ofstream(cert, std::ios::trunc) << "not a certificate\n"; }
  ASSERT_TRUE(Eventually([&] { return ReloadMetric(*server, "loopserve_tls_reloads_total") == 2; }))
      << server->Logs();
  EXPECT_EQ(call(new_pki->ca_cert), grpc::StatusCode::OK);
  std::filesystem::copy_file(old_pki->server_cert, cert,
                             std::filesystem::copy_options::overwrite_existing);
  ASSERT_TRUE(Eventually([&] { return ReloadMetric(*server, "loopserve_tls_reloads_total") == 3; }))
      << server->Logs();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // gRPC's own 1 s reread
  EXPECT_EQ(call(new_pki->ca_cert), grpc::StatusCode::OK);
  EXPECT_EQ(call(old_pki->ca_cert), grpc::StatusCode::UNAVAILABLE);
  const std::string logs = server->Logs();
  EXPECT_THAT(logs, HasSubstr("TLS files reloaded"));
  EXPECT_THAT(logs, HasSubstr("no PEM certificate"));
  EXPECT_THAT(logs, HasSubstr("the key does not match the certificate"));
  EXPECT_EQ(server->Terminate(std::chrono::seconds(20)), 0);
  // The private copies (a private key among them) went with the server.
  EXPECT_EQ(PrivateTlsCopies(), copies_before);
}

}  // namespace
}  // namespace loopserve::testing

// In-process tests of the server's pure pieces (no gRPC server): config
// parsing and validation, named policies, and the proto -> engine request
// conversion under a deployment's defaults, limits and override rules.
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/log.h"
#include "server/request_builder.h"
#include "server/server_config.h"
#include "tests/integration/test_model.h"

namespace loopserve::testing {
namespace {

using ::testing::HasSubstr;

ModelConfig Config() {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(ModelConfigJson().dump(), "test");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : ModelConfig{};
}

TEST(ServerConfigTest, DefaultsAndFields) {
  absl::StatusOr<ServerConfig> c = ServerConfigFromJson(nlohmann::json::object());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->listen_address, "127.0.0.1:50051");
  EXPECT_EQ(c->metrics_address, "127.0.0.1:9464");
  EXPECT_TRUE(c->deployments.empty());
  c = ServerConfigFromJson({{"max_batch_tokens", 64}, {"deployments", {{{"name", "a"}}}}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->max_batch_tokens, 64);
  EXPECT_EQ(c->deployments.size(), 1u);
}

TEST(ServerConfigTest, ErrorsNameTheField) {
  struct Case {
    nlohmann::json json;
    std::string field;
  };
  const std::vector<Case> cases = {
      {{{"bogus", 1}}, "`bogus`: unknown field"},
      {{{"max_num_seqs", "x"}}, "`max_num_seqs`: expected an integer"},
      {{{"listen_address", 5}}, "`listen_address`: expected a string"},
      {{{"block_size", 0}}, "`block_size`"},
      {{{"backend", "tpu"}}, "`backend`"},
      {{{"drain_grace_seconds", -1}}, "`drain_grace_seconds`"},
      {{{"deployments", {1}}}, "`deployments[0]`"},
      {{{"deployments", "x"}}, "`deployments`"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ServerConfig> config = ServerConfigFromJson(c.json);
    ASSERT_FALSE(config.ok()) << c.json.dump();
    EXPECT_TRUE(absl::IsInvalidArgument(config.status()));
    EXPECT_THAT(std::string(config.status().message()), HasSubstr(c.field));
  }
}

TEST(ServerConfigTest, NamedPolicies) {
  testutil::TempDir dir;
  absl::StatusOr<std::map<std::string, ExitPolicy>> none = LoadNamedPolicies(dir.path(), Config());
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  WriteJson(dir.Join("exit_policies.json"),
            {{"policies", {{"quick", {{"criterion", "max_prob"}, {"threshold", 0.5}}}}}});
  absl::StatusOr<std::map<std::string, ExitPolicy>> named = LoadNamedPolicies(dir.path(), Config());
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(named->at("quick").criterion, ExitCriterion::kMaxProb);
  WriteJson(dir.Join("exit_policies.json"),
            {{"policies", {{"deep", {{"criterion", "never"}, {"max_loops", 99}}}}}});
  named = LoadNamedPolicies(dir.path(), Config());
  ASSERT_FALSE(named.ok());
  EXPECT_THAT(std::string(named.status().message()), HasSubstr("policy \"deep\""));
}

Deployment MakeDeployment(bool allow_overrides) {
  Deployment d;
  d.name = "d";
  d.default_max_tokens = 7;
  d.default_sampling.temperature = 0.5;
  d.default_sampling.top_p = 0.9;
  d.limits.max_tokens = 20;
  d.limits.max_prompt_tokens = 5;
  d.limits.allow_exit_overrides = allow_overrides;
  d.policy.criterion = ExitCriterion::kEntropy;
  d.policy.threshold = 1.5;
  return d;
}

TEST(RequestBuilderTest, DefaultsComeFromTheDeployment) {
  v1::GenerateRequest proto = IdsRequest("d", {1, 2, 3}, 1);
  proto.clear_max_tokens();
  proto.mutable_sampling()->set_top_p(0.5);
  absl::StatusOr<BuiltRequest> built =
      BuildGenerationRequest(proto, MakeDeployment(false), Config(), nullptr);
  ASSERT_TRUE(built.ok()) << built.status();
  EXPECT_EQ(built->request.max_tokens, 7);
  EXPECT_FLOAT_EQ(built->request.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(built->request.sampling.top_p, 0.5f);
  EXPECT_EQ(built->request.policy.criterion, ExitCriterion::kEntropy);
  EXPECT_FALSE(built->policy_override);
  EXPECT_EQ(built->policy_label, "entropy:1.5");
}

TEST(RequestBuilderTest, OverridesOnlyWhereAllowed) {
  v1::GenerateRequest proto = IdsRequest("d", {1, 2, 3}, 4);
  proto.mutable_exit_override()->set_threshold(0.25);
  absl::StatusOr<BuiltRequest> built =
      BuildGenerationRequest(proto, MakeDeployment(false), Config(), nullptr);
  EXPECT_TRUE(absl::IsPermissionDenied(built.status())) << built.status();
  built = BuildGenerationRequest(proto, MakeDeployment(true), Config(), nullptr);
  ASSERT_TRUE(built.ok()) << built.status();
  EXPECT_EQ(built->request.policy.criterion, ExitCriterion::kEntropy);  // kept
  EXPECT_DOUBLE_EQ(built->request.policy.threshold, 0.25);
  EXPECT_TRUE(built->policy_override);
  EXPECT_EQ(built->policy_label, "override");
  // An empty override message is no override.
  proto.mutable_exit_override()->Clear();
  built = BuildGenerationRequest(proto, MakeDeployment(false), Config(), nullptr);
  EXPECT_TRUE(built.ok()) << built.status();
}

TEST(RequestBuilderTest, LimitsAndTokenizerlessText) {
  const ModelConfig config = Config();
  auto status = [&](const v1::GenerateRequest& p) {
    return BuildGenerationRequest(p, MakeDeployment(true), config, nullptr).status();
  };
  EXPECT_THAT(std::string(status(IdsRequest("d", {1, 2, 3}, 21)).message()),
              HasSubstr("limit of 20"));
  EXPECT_THAT(std::string(status(IdsRequest("d", {1, 2, 3, 4, 5, 6}, 2)).message()),
              HasSubstr("at most 5"));
  v1::GenerateRequest text;
  text.set_text("hi");
  EXPECT_TRUE(absl::IsFailedPrecondition(status(text)));
}

TEST(RequestBuilderTest, WithATokenizer) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::FromJson(TinyTokenizerJson().dump());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  ModelConfig config = Config();
  config.vocab_size = 266;
  v1::GenerateRequest proto;
  proto.set_text("hello");
  proto.add_stop("hello");
  proto.add_stop_token_ids(7);
  absl::StatusOr<BuiltRequest> built =
      BuildGenerationRequest(proto, MakeDeployment(false), config, tokenizer->get());
  ASSERT_TRUE(built.ok()) << built.status();
  EXPECT_THAT(built->request.prompt, ::testing::ElementsAre(261, 259));             // BOS, hello
  // Stop strings stay text (matched on the generated text); EOS is a stop id.
  EXPECT_THAT(built->request.stop_token_ids, ::testing::ElementsAre(7, 262));
  proto.add_stop("hello world");
  built = BuildGenerationRequest(proto, MakeDeployment(false), config, tokenizer->get());
  ASSERT_TRUE(built.ok()) << built.status();
  EXPECT_THAT(built->request.stop_strings, ::testing::ElementsAre("hello", "hello world"));
}

TEST(LogTest, OneJsonObjectPerLine) {
  const std::string line =
      FormatLogLine(LogLevel::kWarning, "a \"quoted\"\nmsg", {{"request_id", "r1"}, {"n", 3}});
  EXPECT_EQ(line.find('\n'), std::string::npos);
  const nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j.at("level"), "warning");
  EXPECT_EQ(j.at("msg"), "a \"quoted\"\nmsg");
  EXPECT_EQ(j.at("request_id"), "r1");
  EXPECT_EQ(j.at("n"), 3);
  EXPECT_TRUE(j.contains("ts"));
}

}  // namespace
}  // namespace loopserve::testing

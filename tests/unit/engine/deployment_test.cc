// Tests engine/deployment: parsing a deployment from JSON (named policies,
// inline policies, sampling defaults, limits, every error naming its field)
// and the registry's lookups and validated live policy changes.
#include "engine/deployment.h"

#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace loopserve {
namespace {

using ::testing::HasSubstr;

ModelConfig Config(bool exit_gate = false) {
  ModelConfig c;
  c.num_loops = 4;
  c.exit_gate = exit_gate;
  return c;
}

std::map<std::string, ExitPolicy> Named() {
  ExitPolicy p;
  p.criterion = ExitCriterion::kEntropy;
  p.threshold = 0.5;
  return {{"calibrated", p}};
}

TEST(DeploymentFromJson, InlinePolicySamplingAndLimits) {
  const nlohmann::json j = nlohmann::json::parse(R"({
    "name": "fast",
    "exit_policy": {"criterion": "max_prob", "threshold": 0.8, "min_loops": 2},
    "sampling": {"temperature": 0.7, "top_p": 0.9, "seed": 3},
    "default_max_tokens": 32,
    "limits": {"max_tokens": 100, "max_prompt_tokens": 50, "allow_exit_overrides": true}})");
  absl::StatusOr<Deployment> d = DeploymentFromJson(j, Config(), Named());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->name, "fast");
  EXPECT_EQ(d->policy.criterion, ExitCriterion::kMaxProb);
  EXPECT_DOUBLE_EQ(d->policy.threshold, 0.8);
  EXPECT_EQ(d->policy.min_loops, 2);
  EXPECT_FLOAT_EQ(d->default_sampling.temperature, 0.7f);
  EXPECT_FLOAT_EQ(d->default_sampling.top_p, 0.9f);
  EXPECT_EQ(d->default_sampling.seed, 3u);
  EXPECT_EQ(d->default_max_tokens, 32);
  EXPECT_EQ(d->limits.max_tokens, 100);
  EXPECT_EQ(d->limits.max_prompt_tokens, 50);
  EXPECT_TRUE(d->limits.allow_exit_overrides);
}

TEST(DeploymentFromJson, NamedPolicy) {
  absl::StatusOr<Deployment> d =
      DeploymentFromJson({{"name", "cal"}, {"policy", "calibrated"}}, Config(), Named());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->policy.criterion, ExitCriterion::kEntropy);
  EXPECT_EQ(d->policy_name, "calibrated");
}

TEST(DeploymentFromJson, DefaultsToStaticDepth) {
  absl::StatusOr<Deployment> d = DeploymentFromJson({{"name", "plain"}}, Config(), Named());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->policy.criterion, ExitCriterion::kNever);
  EXPECT_FALSE(d->limits.allow_exit_overrides);
}

struct BadCase {
  const char* json;
  const char* message;
};

TEST(DeploymentFromJson, ErrorsNameTheField) {
  const BadCase cases[] = {
      {R"({})", "`name`"},
      {R"({"name": ""})", "`name`"},
      {R"({"name": "x", "colour": 1})", "field `colour`: unknown field"},
      {R"({"name": "x", "policy": "missing"})", "no named policy `missing`"},
      {R"({"name": "x", "policy": "calibrated", "exit_policy": {}})", "either"},
      {R"({"name": "x", "exit_policy": {"criterion": "sometimes"}})", "exit_policy"},
      {R"({"name": "x", "exit_policy": {"criterion": "gate", "threshold": 0.5}})", "gate"},
      {R"({"name": "x", "exit_policy": {"criterion": "never", "max_loops": 9}})", "max_loops"},
      {R"({"name": "x", "sampling": {"temperature": -1}})", "temperature"},
      {R"({"name": "x", "sampling": {"warmth": 1}})", "sampling.warmth"},
      {R"({"name": "x", "limits": {"max_tokens": 0}})", "limits"},
      {R"({"name": "x", "limits": {"max_tokens": "many"}})", "limits"},
      {R"({"name": "x", "limits": {"burst": 1}})", "limits.burst"},
  };
  for (const BadCase& c : cases) {
    absl::StatusOr<Deployment> d =
        DeploymentFromJson(nlohmann::json::parse(c.json), Config(), Named());
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_THAT(std::string(d.status().message()), HasSubstr(c.message)) << c.json;
  }
}

TEST(DeploymentFromJson, GateAllowedOnModelsWithAGate) {
  absl::StatusOr<Deployment> d = DeploymentFromJson(
      nlohmann::json::parse(R"({"name": "g", "exit_policy": {"criterion": "gate",
                                "threshold": 0.5}})"),
      Config(/*exit_gate=*/true), Named());
  EXPECT_TRUE(d.ok()) << d.status();
}

TEST(DeploymentRegistry, LookupListAndValidatedPolicyChange) {
  DeploymentRegistry registry(Config());
  Deployment a;
  a.name = "a";
  Deployment b;
  b.name = "b";
  ASSERT_TRUE(registry.Add(a).ok());
  ASSERT_TRUE(registry.Add(b).ok());
  EXPECT_EQ(registry.Add(a).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(registry.List().size(), 2u);
  EXPECT_EQ(registry.Get("nope").status().code(), absl::StatusCode::kNotFound);

  ExitPolicy p;
  p.criterion = ExitCriterion::kMargin;
  p.threshold = 0.3;
  absl::StatusOr<Deployment> changed = registry.SetPolicy("a", p);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_EQ(changed->policy_version, 1);
  EXPECT_EQ(registry.Get("a")->policy, p);
  EXPECT_EQ(registry.Get("b")->policy.criterion, ExitCriterion::kNever);

  ExitPolicy bad = p;
  bad.threshold = 2.0;  // margin is a probability difference
  EXPECT_EQ(registry.SetPolicy("a", bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.Get("a")->policy, p) << "a refused change must leave the policy as it was";
  EXPECT_EQ(registry.SetPolicy("nope", p).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace loopserve

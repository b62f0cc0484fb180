// Tests engine/exit_policy: names, validation, JSON, per-criterion needs and
// the exit loop each criterion picks for scripted observations.
#include "engine/exit_policy.h"

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace loopserve {
namespace {

using ::testing::HasSubstr;

ModelConfig Config(int num_loops, bool exit_gate = false) {
  ModelConfig config;
  config.num_loops = num_loops;
  config.exit_gate = exit_gate;
  return config;
}

ExitPolicy Policy(ExitCriterion criterion, double threshold, int min_loops = 1, int max_loops = 0) {
  ExitPolicy policy;
  policy.criterion = criterion;
  policy.threshold = threshold;
  policy.min_loops = min_loops;
  policy.max_loops = max_loops;
  return policy;
}

BoundaryObservation Stats(int32_t top1, float max_prob = 0, float margin = 0, float entropy = 0) {
  BoundaryObservation obs;
  obs.stats = LogitStats{.top1 = top1, .max_prob = max_prob, .margin = margin, .entropy = entropy};
  return obs;
}

BoundaryObservation Kl(std::optional<double> kl) {
  BoundaryObservation obs = Stats(0);
  obs.kl = kl;
  return obs;
}

BoundaryObservation Cosine(std::optional<double> cosine) {
  BoundaryObservation obs;
  obs.hidden_cosine = cosine;
  return obs;
}

BoundaryObservation Gate(double lambda) {
  BoundaryObservation obs;
  obs.gate = lambda;
  return obs;
}

// Feeds observations in order until the tracker exits; returns the exit loop
// (or -1 if the script ran out first).
int ExitLoop(ExitTracker& tracker, const std::vector<BoundaryObservation>& script,
             ExitDecision* last = nullptr) {
  for (int t = 0; t < static_cast<int>(script.size()); ++t) {
    const ExitDecision decision = tracker.Observe(t, script[t]);
    if (last != nullptr) *last = decision;
    if (decision.exit) return t;
  }
  return -1;
}

TEST(ExitPolicyNames, RoundTripEveryCriterionAndKvFill) {
  for (ExitCriterion c : {ExitCriterion::kNever, ExitCriterion::kMaxProb, ExitCriterion::kMargin,
                          ExitCriterion::kEntropy, ExitCriterion::kKl, ExitCriterion::kTop1Stable,
                          ExitCriterion::kHiddenCosine, ExitCriterion::kGate}) {
    absl::StatusOr<ExitCriterion> parsed = ParseExitCriterion(ExitCriterionName(c));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, c);
  }
  EXPECT_STREQ(ExitCriterionName(ExitCriterion::kTop1Stable), "top1_stable");
  EXPECT_STREQ(ExitCriterionName(ExitCriterion::kHiddenCosine), "hidden_cosine");
  EXPECT_EQ(*ParseKvFill("reuse"), KvFill::kReuse);
  EXPECT_EQ(*ParseKvFill("propagate"), KvFill::kPropagate);
  EXPECT_STREQ(KvFillName(KvFill::kPropagate), "propagate");

  absl::StatusOr<ExitCriterion> bad = ParseExitCriterion("maxprob");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("\"maxprob\""));
  EXPECT_THAT(bad.status().message(), HasSubstr("\"max_prob\""));
  EXPECT_FALSE(ParseKvFill("copy").ok());
}

TEST(ValidateExitPolicy, AcceptsDefaultsAndInRangeThresholds) {
  EXPECT_TRUE(ValidateExitPolicy(ExitPolicy{}, Config(4)).ok());
  EXPECT_TRUE(ValidateExitPolicy(Policy(ExitCriterion::kMaxProb, 1.0, 2, 4), Config(4)).ok());
  EXPECT_TRUE(ValidateExitPolicy(Policy(ExitCriterion::kEntropy, 3.5), Config(4)).ok());
  EXPECT_TRUE(ValidateExitPolicy(Policy(ExitCriterion::kHiddenCosine, -1), Config(4)).ok());
  EXPECT_TRUE(ValidateExitPolicy(Policy(ExitCriterion::kTop1Stable, 2), Config(4)).ok());
  EXPECT_TRUE(ValidateExitPolicy(Policy(ExitCriterion::kGate, 0.5), Config(4, true)).ok());
  EXPECT_EQ(ResolvedMaxLoops(ExitPolicy{}, 6), 6);
  EXPECT_EQ(ResolvedMaxLoops(Policy(ExitCriterion::kNever, 0, 1, 3), 6), 3);
}

TEST(ValidateExitPolicy, RejectsBadLoopBounds) {
  struct Case {
    int min_loops;
    int max_loops;
    const char* field;
  };
  for (const Case& c : {Case{0, 0, "min_loops"}, Case{5, 0, "min_loops"}, Case{3, 2, "min_loops"},
                        Case{1, 5, "max_loops"}, Case{1, -1, "max_loops"}}) {
    const absl::Status status =
        ValidateExitPolicy(Policy(ExitCriterion::kNever, 0, c.min_loops, c.max_loops), Config(4));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << c.min_loops << " " << c.max_loops;
    EXPECT_THAT(status.message(), HasSubstr(c.field));
  }
  EXPECT_FALSE(ValidateExitPolicy(ExitPolicy{}, Config(0)).ok());
}

TEST(ValidateExitPolicy, RejectsOutOfRangeThresholds) {
  struct Case {
    ExitCriterion criterion;
    double threshold;
  };
  const double nan = std::nan("");
  for (const Case& c :
       {Case{ExitCriterion::kMaxProb, 1.01}, Case{ExitCriterion::kMaxProb, -0.1},
        Case{ExitCriterion::kMargin, 2}, Case{ExitCriterion::kEntropy, -1},
        Case{ExitCriterion::kKl, -1e-9}, Case{ExitCriterion::kTop1Stable, -1},
        Case{ExitCriterion::kHiddenCosine, 1.5}, Case{ExitCriterion::kHiddenCosine, -1.5},
        Case{ExitCriterion::kGate, 1.1}, Case{ExitCriterion::kEntropy, INFINITY},
        Case{ExitCriterion::kNever, nan}, Case{ExitCriterion::kMaxProb, nan}}) {
    const absl::Status status =
        ValidateExitPolicy(Policy(c.criterion, c.threshold), Config(4, /*exit_gate=*/true));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << ExitCriterionName(c.criterion) << " " << c.threshold;
    EXPECT_THAT(status.message(), HasSubstr("threshold"));
    EXPECT_THAT(status.message(), HasSubstr(ExitCriterionName(c.criterion)));
  }
}

TEST(ValidateExitPolicy, GateNeedsExitGate) {
  const absl::Status status = ValidateExitPolicy(Policy(ExitCriterion::kGate, 0.5), Config(4));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("exit_gate"));
}

TEST(ExitPolicyJson, RoundTrip) {
  ExitPolicy policy = Policy(ExitCriterion::kKl, 0.125, 2, 3);
  policy.kv_fill = KvFill::kPropagate;
  const nlohmann::json json = ExitPolicyToJson(policy);
  EXPECT_EQ(json.at("criterion"), "kl");
  EXPECT_EQ(json.at("kv_fill"), "propagate");
  absl::StatusOr<ExitPolicy> back = ExitPolicyFromJson(json);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, policy);
  absl::StatusOr<ExitPolicy> reparsed = ExitPolicyFromJson(nlohmann::json::parse(json.dump()));
  ASSERT_TRUE(reparsed.ok());
  EXPECT_EQ(*reparsed, policy);
}

TEST(ExitPolicyJson, AbsentFieldsKeepDefaults) {
  const ExitPolicy deployment = Policy(ExitCriterion::kMaxProb, 0.9, 2, 4);
  absl::StatusOr<ExitPolicy> merged =
      ExitPolicyFromJson(nlohmann::json{{"threshold", 0.8}}, deployment);
  ASSERT_TRUE(merged.ok()) << merged.status();
  ExitPolicy expected = deployment;
  expected.threshold = 0.8;
  EXPECT_EQ(*merged, expected);
  EXPECT_EQ(*ExitPolicyFromJson(nlohmann::json::object()), ExitPolicy{});
  // An integer threshold is a number too.
  EXPECT_EQ(ExitPolicyFromJson(nlohmann::json{{"threshold", 1}})->threshold, 1.0);
}

TEST(ExitPolicyJson, BadFieldsNameTheField) {
  struct Case {
    const char* json;
    const char* needle;
  };
  for (const Case& c : {
           Case{R"({"criterion": "fast"})", "\"fast\""},
           Case{R"({"criterion": 3})", "criterion"},
           Case{R"({"threshold": "0.9"})", "threshold"},
           Case{R"({"min_loops": 1.5})", "min_loops"},
           Case{R"({"max_loops": true})", "max_loops"},
           Case{R"({"max_loops": 1e12})", "max_loops"},
           Case{R"({"min_loops": 99999999999})", "min_loops"},
           Case{R"({"kv_fill": "copy"})", "copy"},
           Case{R"({"kv_fill": null})", "kv_fill"},
           Case{R"({"tau": 0.5})", "tau"},
           Case{R"([1, 2])", "object"},
       }) {
    absl::StatusOr<ExitPolicy> policy = ExitPolicyFromJson(nlohmann::json::parse(c.json));
    EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_THAT(policy.status().message(), HasSubstr(c.needle)) << c.json;
  }
}

TEST(ExitPolicyNeeds, WhichBoundariesComputeWhat) {
  const ExitPolicy max_prob = Policy(ExitCriterion::kMaxProb, 0.9, 3);
  EXPECT_FALSE(NeedsExitHeadAt(max_prob, 1));
  EXPECT_TRUE(NeedsExitHeadAt(max_prob, 2));
  EXPECT_TRUE(NeedsExitHeadAt(Policy(ExitCriterion::kEntropy, 1, 1), 0));

  const ExitPolicy kl = Policy(ExitCriterion::kKl, 0.1, 3);
  EXPECT_FALSE(NeedsExitHeadAt(kl, 0));
  EXPECT_TRUE(NeedsExitHeadAt(kl, 1));  // z_1 for KL at t = 2
  EXPECT_TRUE(NeedsExitHeadAt(Policy(ExitCriterion::kKl, 0.1, 1), 0));

  EXPECT_TRUE(NeedsExitHeadAt(Policy(ExitCriterion::kTop1Stable, 1, 4), 0));
  for (ExitCriterion c :
       {ExitCriterion::kNever, ExitCriterion::kHiddenCosine, ExitCriterion::kGate}) {
    for (int t = 0; t < 4; ++t) EXPECT_FALSE(NeedsExitHeadAt(Policy(c, 0.5, 1), t));
  }

  EXPECT_TRUE(NeedsGateAt(Policy(ExitCriterion::kGate, 0.5, 3), 0));
  EXPECT_FALSE(NeedsGateAt(Policy(ExitCriterion::kMaxProb, 0.5), 0));

  const ExitPolicy cosine = Policy(ExitCriterion::kHiddenCosine, 0.9, 3);
  EXPECT_FALSE(NeedsHiddenAt(cosine, 0));
  EXPECT_TRUE(NeedsHiddenAt(cosine, 1));
  EXPECT_TRUE(NeedsHiddenAt(Policy(ExitCriterion::kHiddenCosine, 0.9, 1), 0));
  EXPECT_FALSE(NeedsHiddenAt(max_prob, 3));
}

TEST(ExitTracker, NeverRunsToMaxLoops) {
  ExitTracker tracker(Policy(ExitCriterion::kNever, 0), 4);
  ExitDecision last;
  EXPECT_EQ(ExitLoop(tracker, std::vector<BoundaryObservation>(4), &last), 3);
  EXPECT_TRUE(last.forced);
  EXPECT_TRUE(std::isnan(last.statistic));
  EXPECT_TRUE(tracker.exited());

  ExitTracker capped(Policy(ExitCriterion::kNever, 0, 1, 2), 4);
  EXPECT_EQ(ExitLoop(capped, std::vector<BoundaryObservation>(4)), 1);
}

TEST(ExitTracker, MaxProbStopsAtFirstConfidentBoundary) {
  ExitTracker tracker(Policy(ExitCriterion::kMaxProb, 0.8), 6);
  ExitDecision last;
  EXPECT_EQ(
      ExitLoop(tracker, {Stats(1, 0.5), Stats(1, 0.79), Stats(2, 0.8), Stats(2, 0.99)}, &last), 2);
  EXPECT_FALSE(last.forced);
  EXPECT_DOUBLE_EQ(last.statistic, 0.8f);
}

TEST(ExitTracker, MarginAndEntropy) {
  ExitTracker margin(Policy(ExitCriterion::kMargin, 0.5), 4);
  EXPECT_EQ(ExitLoop(margin, {Stats(0, 0.9, 0.3), Stats(0, 0.9, 0.6), Stats(0, 0.9, 0.9)}), 1);

  // Entropy stops when it falls to τ or below.
  ExitTracker entropy(Policy(ExitCriterion::kEntropy, 1.0), 4);
  EXPECT_EQ(ExitLoop(entropy, {Stats(0, 0, 0, 2.0), Stats(0, 0, 0, 1.5), Stats(0, 0, 0, 1.0)}), 2);
}

TEST(ExitTracker, MinLoopsDelaysAndMaxLoopsForces) {
  // Confident from t = 0, but min_loops = 3 allows exits from t = 2 only.
  ExitTracker delayed(Policy(ExitCriterion::kMaxProb, 0.5, 3), 6);
  ExitDecision early = delayed.Observe(0, BoundaryObservation{});  // no head before min
  EXPECT_FALSE(early.exit);
  EXPECT_FALSE(delayed.Observe(1, Stats(0, 0.99)).exit);  // stats given anyway: still too early
  EXPECT_TRUE(delayed.Observe(2, Stats(0, 0.99)).exit);

  // Never confident: stops at max_loops − 1 = 3, forced.
  ExitTracker forced(Policy(ExitCriterion::kMaxProb, 0.99, 1, 4), 6);
  ExitDecision last;
  EXPECT_EQ(ExitLoop(forced, std::vector<BoundaryObservation>(6, Stats(0, 0.5)), &last), 3);
  EXPECT_TRUE(last.forced);
  EXPECT_DOUBLE_EQ(last.statistic, 0.5);

  // min_loops = max_loops: exactly that depth.
  ExitTracker exact(Policy(ExitCriterion::kMaxProb, 0.0, 3, 3), 6);
  EXPECT_EQ(ExitLoop(exact, std::vector<BoundaryObservation>(6, Stats(0, 1.0))), 2);
}

TEST(ExitTracker, KlNeedsAPreviousBoundary) {
  // t = 0 has no KL even with τ huge: the criterion holds only for t ≥ 1.
  ExitTracker tracker(Policy(ExitCriterion::kKl, 0.1), 5);
  ExitDecision first = tracker.Observe(0, Kl(std::nullopt));
  EXPECT_FALSE(first.exit);
  EXPECT_TRUE(std::isnan(first.statistic));
  EXPECT_FALSE(tracker.Observe(1, Kl(0.5)).exit);
  ExitDecision hit = tracker.Observe(2, Kl(0.1));
  EXPECT_TRUE(hit.exit);
  EXPECT_DOUBLE_EQ(hit.statistic, 0.1);
}

TEST(ExitTracker, KlAtMinLoopsUsesTheBoundaryBefore) {
  // min_loops = 3: the engine computes z_1 so KL(z_2‖z_1) decides at t = 2.
  ExitTracker tracker(Policy(ExitCriterion::kKl, 0.2, 3), 5);
  EXPECT_FALSE(tracker.Observe(0, BoundaryObservation{}).exit);
  EXPECT_FALSE(tracker.Observe(1, Kl(std::nullopt)).exit);
  EXPECT_TRUE(tracker.Observe(2, Kl(0.05)).exit);
}

TEST(ExitTracker, Top1StreakCountsAndResets) {
  // τ = 2: two consecutive repeats of the argmax.
  ExitTracker tracker(Policy(ExitCriterion::kTop1Stable, 2), 8);
  const std::vector<int32_t> top1 = {5, 5, 7, 7, 7, 7};
  const std::vector<int> streak = {0, 1, 0, 1, 2};
  for (int t = 0; t < 5; ++t) {
    const ExitDecision d = tracker.Observe(t, Stats(top1[t]));
    EXPECT_EQ(tracker.top1_streak(), streak[t]) << t;
    EXPECT_DOUBLE_EQ(d.statistic, streak[t]);
    EXPECT_EQ(d.exit, t == 4) << t;
  }
}

TEST(ExitTracker, Top1StreakBuildsBeforeMinLoops) {
  // The streak starts at t = 0 even though exits are allowed from t = 3.
  ExitTracker tracker(Policy(ExitCriterion::kTop1Stable, 3, 4), 8);
  EXPECT_EQ(ExitLoop(tracker, {Stats(9), Stats(9), Stats(9), Stats(9), Stats(9)}), 3);

  // τ = 0 exits at the first allowed boundary whatever the streak.
  ExitTracker zero(Policy(ExitCriterion::kTop1Stable, 0, 2), 8);
  EXPECT_EQ(ExitLoop(zero, {Stats(1), Stats(2), Stats(3)}), 1);
}

TEST(ExitTracker, HiddenCosine) {
  ExitTracker tracker(Policy(ExitCriterion::kHiddenCosine, 0.95), 6);
  EXPECT_EQ(ExitLoop(tracker, {Cosine(std::nullopt), Cosine(0.5), Cosine(0.94), Cosine(0.95)}), 3);
  // Before min_loops − 1 the cosine is reported but cannot stop the token.
  ExitTracker delayed(Policy(ExitCriterion::kHiddenCosine, 0.5, 3), 6);
  ExitDecision d = delayed.Observe(0, Cosine(std::nullopt));
  d = delayed.Observe(1, Cosine(0.99));
  EXPECT_FALSE(d.exit);
  EXPECT_DOUBLE_EQ(d.statistic, 0.99);
  EXPECT_TRUE(delayed.Observe(2, Cosine(0.99)).exit);
}

TEST(ExitTracker, GateCdfMatchesSpec) {
  // F_t = Σ_{s≤t} λ_s Π_{r<s}(1−λ_r).
  const std::vector<double> lambda = {0.1, 0.2, 0.3, 0.4, 0.5};
  ExitTracker tracker(Policy(ExitCriterion::kGate, 0.99), 5);
  double survival = 1, cdf = 0;
  for (int t = 0; t < 5; ++t) {
    cdf += lambda[t] * survival;
    survival *= 1 - lambda[t];
    const ExitDecision d = tracker.Observe(t, Gate(lambda[t]));
    EXPECT_NEAR(d.statistic, cdf, 1e-12) << t;
    EXPECT_NEAR(tracker.gate_cdf(), cdf, 1e-12) << t;
    EXPECT_EQ(d.exit, t == 4);
  }
  // F after 0.1, 0.2, 0.3: 1 − 0.9·0.8·0.7 = 0.496; τ = 0.49 stops at t = 2.
  ExitTracker stops(Policy(ExitCriterion::kGate, 0.49), 5);
  EXPECT_EQ(ExitLoop(stops, {Gate(0.1), Gate(0.2), Gate(0.3), Gate(0.4)}), 2);
  // The CDF accumulates before min_loops: λ = 0.9 at t = 0 already gives
  // F = 0.9, so the token stops at the first allowed boundary.
  ExitTracker delayed(Policy(ExitCriterion::kGate, 0.9, 3), 5);
  EXPECT_EQ(ExitLoop(delayed, {Gate(0.9), Gate(0), Gate(0), Gate(0)}), 2);
}

TEST(ExitTracker, ResetStartsOver) {
  ExitTracker tracker(Policy(ExitCriterion::kTop1Stable, 1), 4);
  EXPECT_EQ(ExitLoop(tracker, {Stats(1), Stats(1)}), 1);
  tracker.Reset();
  EXPECT_FALSE(tracker.exited());
  EXPECT_EQ(tracker.top1_streak(), 0);
  EXPECT_EQ(ExitLoop(tracker, {Stats(1), Stats(2), Stats(2)}), 2);
}

TEST(ExitTrackerDeathTest, ProgrammerErrorsCrash) {
  EXPECT_DEATH(
      {
        ExitTracker tracker(Policy(ExitCriterion::kMaxProb, 0.5), 4);
        tracker.Observe(0, BoundaryObservation{});
      },
      "exit head");
  EXPECT_DEATH(
      {
        ExitTracker tracker(Policy(ExitCriterion::kNever, 0), 4);
        tracker.Observe(1, BoundaryObservation{});
      },
      "expected 0");
  EXPECT_DEATH(
      {
        ExitTracker tracker(Policy(ExitCriterion::kNever, 0, 1, 1), 4);
        tracker.Observe(0, BoundaryObservation{});
        tracker.Observe(1, BoundaryObservation{});
      },
      "after the token exited");
  EXPECT_DEATH(
      {
        ExitTracker tracker(Policy(ExitCriterion::kGate, 0.5), 4);
        tracker.Observe(0, BoundaryObservation{});
      },
      "lambda");
}

}  // namespace
}  // namespace loopserve

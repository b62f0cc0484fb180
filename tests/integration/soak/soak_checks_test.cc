// Unit tests of the soak's verdicts (tools/soak): the scrape parser, the
// per-request checks and the server-vs-client metrics agreement, so that a
// passing soak means what docs/reliability.md says it means.
#include <gtest/gtest.h>

#include <set>

#include "grpcpp/support/status.h"
#include "tools/soak/metrics_scrape.h"
#include "tools/soak/soak_checks.h"
#include "tools/soak/soak_plan.h"

namespace loopserve::soak {
namespace {

constexpr int kLoops = 4;

Outcome Ok(RequestKind kind, const std::string& deployment, std::vector<int32_t> tokens,
           int64_t prompt = 10, bool recomputed = false) {
  Outcome o;
  o.spec.kind = kind;
  o.spec.deployment = deployment;
  o.spec.template_index = 0;
  o.code = 0;
  o.tokens = std::move(tokens);
  o.usage_prompt_tokens = prompt;
  o.usage_completion_tokens = static_cast<int64_t>(o.tokens.size());
  const int64_t forwards = prompt + static_cast<int64_t>(o.tokens.size()) - 1;
  o.usage_loops_full_depth = (forwards + (recomputed ? 5 : 0)) * kLoops;
  return o;
}

Outcome Failed(RequestKind kind, const std::string& deployment, grpc::StatusCode code) {
  Outcome o;
  o.spec.kind = kind;
  o.spec.deployment = deployment;
  o.code = code;
  return o;
}

TallyOptions Options(bool exact_after_preemption) {
  TallyOptions t;
  t.num_loops = kLoops;
  t.full_depth = {"full"};
  t.exact_after_preemption = exact_after_preemption;
  return t;
}

class TallyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    refs_.Set("full", 0, {1, 2, 3});
    refs_.Set("fast", 0, {1, 2, 3});
    refs_.Set("live@A", 0, {1, 2, 3});
    refs_.Set("live@B", 0, {1, 5});
  }
  References refs_;
};

TEST_F(TallyTest, ReplyEqualToReferencePasses) {
  Tally tally(Options(true));
  EXPECT_EQ(tally.Record(Ok(RequestKind::kUnary, "full", {1, 2, 3}), refs_, "", ""), "");
  EXPECT_EQ(tally.counts().matched_reference, 1);
  EXPECT_EQ(tally.counts().violations, 0);
}

TEST_F(TallyTest, ReplyDifferentFromReferenceFails) {
  Tally tally(Options(true));
  EXPECT_NE(tally.Record(Ok(RequestKind::kStream, "full", {1, 2, 4}), refs_, "", ""), "");
  EXPECT_EQ(tally.counts().violations, 1);
  ASSERT_EQ(tally.first_violations().size(), 1u);
  EXPECT_NE(tally.first_violations()[0].find("first difference at 2"), std::string::npos);
}

TEST_F(TallyTest, DriftAfterPreemptionIsExcusedOnlyWhenAskedAndOnlyOffFullDepth) {
  Tally lenient(Options(false));
  EXPECT_EQ(lenient.Record(Ok(RequestKind::kUnary, "fast", {1, 9, 9}, 10, true), refs_, "", ""),
            "");
  EXPECT_EQ(lenient.counts().drift_after_preemption, 1);
  EXPECT_EQ(lenient.counts().recomputed, 1);
  // Not recomputed: a difference is a violation even when lenient.
  EXPECT_NE(lenient.Record(Ok(RequestKind::kUnary, "fast", {1, 9, 9}), refs_, "", ""), "");
  // Full depth recomputes exactly: never excused.
  EXPECT_NE(lenient.Record(Ok(RequestKind::kUnary, "full", {1, 9, 9}, 10, true), refs_, "", ""),
            "");
  Tally strict(Options(true));
  EXPECT_NE(strict.Record(Ok(RequestKind::kUnary, "fast", {1, 9, 9}, 10, true), refs_, "", ""),
            "");
}

TEST_F(TallyTest, FaultKindsAcceptOnlyTheirDocumentedStatus) {
  Tally tally(Options(true));
  EXPECT_EQ(tally.Record(Failed(RequestKind::kCancelUnary, "fast", grpc::StatusCode::CANCELLED),
                         refs_, "", ""),
            "");
  EXPECT_EQ(tally.Record(Failed(RequestKind::kShortDeadline, "fast",
                                grpc::StatusCode::DEADLINE_EXCEEDED),
                         refs_, "", ""),
            "");
  // The queue limit may refuse anything.
  EXPECT_EQ(tally.Record(Failed(RequestKind::kUnary, "fast", grpc::StatusCode::RESOURCE_EXHAUSTED),
                         refs_, "", ""),
            "");
  EXPECT_NE(tally.Record(Failed(RequestKind::kUnary, "fast", grpc::StatusCode::CANCELLED), refs_,
                         "", ""),
            "");
  EXPECT_NE(tally.Record(Failed(RequestKind::kShortDeadline, "fast", grpc::StatusCode::INTERNAL),
                         refs_, "", ""),
            "");
  // A cancel that lost the race still has to be right.
  EXPECT_NE(tally.Record(Ok(RequestKind::kCancelStream, "fast", {7}), refs_, "", ""), "");
  EXPECT_EQ(tally.counts().violations, 3);
}

TEST_F(TallyTest, MalformedAndGarbageNeedTheirExactCode) {
  Tally tally(Options(true));
  Outcome m = Failed(RequestKind::kMalformed, "full", grpc::StatusCode::INVALID_ARGUMENT);
  m.spec.malformed = MalformedCase::kTokenOutOfVocab;
  EXPECT_EQ(tally.Record(m, refs_, "", ""), "");
  m.spec.malformed = MalformedCase::kOverrideNotAllowed;
  EXPECT_NE(tally.Record(m, refs_, "", ""), "");  // wants PERMISSION_DENIED
  m.spec.malformed = MalformedCase::kUnknownDeployment;
  m.code = grpc::StatusCode::NOT_FOUND;
  EXPECT_EQ(tally.Record(m, refs_, "", ""), "");
  EXPECT_EQ(tally.deployments().count("unknown"), 1u);  // the server's label for it
  EXPECT_EQ(tally.Record(Failed(RequestKind::kGarbage, "full", grpc::StatusCode::UNIMPLEMENTED),
                         refs_, "", ""),
            "");
  EXPECT_NE(tally.Record(Failed(RequestKind::kGarbage, "full", grpc::StatusCode::OK), refs_, "",
                         ""),
            "");
}

TEST_F(TallyTest, LivePolicyRepliesAreClassified) {
  Tally tally(Options(true));
  EXPECT_EQ(tally.Record(Ok(RequestKind::kLive, "live", {1, 2, 3}), refs_, "live@A", "live@B"), "");
  EXPECT_EQ(tally.Record(Ok(RequestKind::kLive, "live", {1, 5}), refs_, "live@A", "live@B"), "");
  EXPECT_EQ(tally.Record(Ok(RequestKind::kLive, "live", {1, 2, 5}), refs_, "live@A", "live@B"), "");
  EXPECT_NE(tally.Record(Ok(RequestKind::kLive, "live", {}), refs_, "live@A", "live@B"), "");
  const Tally::Counts c = tally.counts();
  EXPECT_EQ(c.live_matched_a, 1);
  EXPECT_EQ(c.live_matched_b, 1);
  EXPECT_EQ(c.live_mixed, 2);
}

TEST_F(TallyTest, ShapeErrorOfAnOkReplyFails) {
  Tally tally(Options(true));
  Outcome o = Ok(RequestKind::kStream, "full", {1, 2, 3});
  o.shape_error = "message after the last one";
  EXPECT_EQ(tally.Record(o, refs_, "", ""), "message after the last one");
}

TEST(WasRecomputedTest, CountsForwardsBeyondPromptAndTokens) {
  Outcome o = Ok(RequestKind::kUnary, "full", {1, 2, 3}, 10);
  EXPECT_FALSE(WasRecomputed(o, kLoops));
  o.usage_loops_full_depth += kLoops;
  EXPECT_TRUE(WasRecomputed(o, kLoops));
}

constexpr char kExposition[] = R"(# HELP loopserve_requests_total Requests.
# TYPE loopserve_requests_total counter
loopserve_requests_total{deployment="full",model="m",policy="never",status="ok",finish_reason="length"} 5
loopserve_requests_total{deployment="full",model="m",policy="never",status="ok",finish_reason="stop"} 2
loopserve_requests_total{deployment="full",model="m",policy="",status="invalid_argument",finish_reason="none"} 1
loopserve_requests_total{deployment="calib",model="m",policy="x",status="ok",finish_reason="length"} 3
loopserve_requests_total{deployment="calib",model="m",policy="x",status="cancelled",finish_reason="cancelled"} 1
loopserve_generated_tokens_total{deployment="full",model="m",policy="never"} 70
loopserve_generated_tokens_total{deployment="calib",model="m",policy="x"} 40
loopserve_prompt_tokens_total{deployment="full",model="m",policy="never"} 50
loopserve_prompt_tokens_total{deployment="calib",model="m",policy="x"} 44
loopserve_kv_blocks_used{model="m"} 0
)";

TEST(MetricsSnapshotTest, SumsByNameAndLabels) {
  const MetricsSnapshot m = MetricsSnapshot::Parse(kExposition);
  EXPECT_EQ(m.Sum("loopserve_requests_total"), 12);
  EXPECT_EQ(m.Sum("loopserve_requests_total", {{"deployment", "full"}, {"status", "ok"}}), 7);
  EXPECT_EQ(m.Sum("loopserve_requests_total", {{"deployment", "nope"}}), 0);
  EXPECT_EQ(m.Sum("loopserve_kv_blocks_used"), 0);
  const std::vector<std::string> d = m.LabelValues("loopserve_requests_total", "deployment");
  EXPECT_EQ(std::set<std::string>(d.begin(), d.end()), (std::set<std::string>{"calib", "full"}));
}

TEST(MetricsAgreementTest, ExactWithoutClientFaultsBoundedWithThem) {
  const MetricsSnapshot before = MetricsSnapshot::Parse("");
  const MetricsSnapshot after = MetricsSnapshot::Parse(kExposition);
  std::map<std::string, DeploymentTally> client;
  client["full"].by_code = {{"ok", 7}, {"invalid_argument", 1}};
  client["full"].ok_completion_tokens = 70;
  client["full"].ok_prompt_tokens = 50;
  // calib: the client cancelled 2, one of which the server finished OK.
  client["calib"].by_code = {{"ok", 2}, {"cancelled", 2}};
  client["calib"].ok_completion_tokens = 30;
  client["calib"].ok_prompt_tokens = 20;
  std::vector<std::string> report;
  EXPECT_TRUE(CheckMetricsAgreement(before, after, client, report).empty());
  EXPECT_EQ(report.size(), 2u);

  // One OK too many on a deployment without client faults.
  client["full"].by_code["ok"] = 6;
  client["full"].ok_completion_tokens = 60;
  std::vector<std::string> v = CheckMetricsAgreement(before, after, client, report);
  EXPECT_FALSE(v.empty());
  // Generated tokens must be exact there too.
  client["full"].by_code["ok"] = 7;
  client["full"].ok_completion_tokens = 69;
  v = CheckMetricsAgreement(before, after, client, report);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_NE(v[0].find("generated tokens"), std::string::npos);
}

TEST(SoakPlanTest, DeterministicAndWithinTheModel) {
  PlanOptions o;
  o.seed = 7;
  o.vocab_size = 4096;
  o.context = 256;
  o.num_templates = 16;
  const SoakPlan a(o), b(o);
  std::set<RequestKind> kinds;
  for (int64_t i = 0; i < 2000; ++i) {
    const RequestSpec s = a.SpecFor(i), t = b.SpecFor(i);
    EXPECT_EQ(s.kind, t.kind);
    EXPECT_EQ(s.template_index, t.template_index);
    EXPECT_EQ(s.deployment, t.deployment);
    kinds.insert(s.kind);
  }
  EXPECT_EQ(kinds.size(), 9u);  // every kind occurs
  int long_prompts = 0;
  for (const PromptTemplate& t : a.templates()) {
    EXPECT_LE(static_cast<int>(t.prompt.size()) + t.max_tokens, o.context);
    EXPECT_GE(t.max_tokens, 1);
    long_prompts += t.long_prompt;
    for (int32_t id : t.prompt) EXPECT_LT(id, o.vocab_size);
  }
  EXPECT_EQ(long_prompts, 4);
}

}  // namespace
}  // namespace loopserve::soak

// Tests engine/calibration, engine/calibration_record and
// engine/named_policies on a small random checkpoint with an exit gate:
// offline exits against a straightforward re-implementation of MODEL_SPEC
// "Early exit" and against the engine's own decode, FLOP accounting against
// FlopModel::Done, the exit_policies.json round trip and its errors, Pareto
// fronts and the cheapest point meeting a target.
#include "engine/calibration.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/calibration_record.h"
#include "engine/compute_accounting.h"
#include "engine/engine.h"
#include "engine/named_policies.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/unit/testing/safetensors_writer.h"

namespace loopserve {
namespace {

using ::testing::HasSubstr;

constexpr int kLoops = 4;

nlohmann::json TinyConfig() {
  return {{"model_type", "looped_moe"},
          {"vocab_size", 64},
          {"hidden_size", 32},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"head_dim", 8},
          {"max_position_embeddings", 64},
          {"num_prelude_layers", 1},
          {"num_recurrent_layers", 2},
          {"num_coda_layers", 1},
          {"num_loops", kLoops},
          {"intermediate_size", 48},
          {"num_experts", 4},
          {"num_experts_per_tok", 2},
          {"moe_intermediate_size", 16},
          {"iter_adaln_rank", 4},
          {"exit_gate", true}};
}

ExitPolicy Policy(ExitCriterion criterion, double threshold, int min_loops = 1, int max_loops = 0) {
  ExitPolicy p;
  p.criterion = criterion;
  p.threshold = threshold;
  p.min_loops = min_loops;
  p.max_loops = max_loops;
  return p;
}

// ---- The straightforward reference, from the raw trace, in double. ----

struct NaiveBoundary {
  std::vector<double> probs;
  int32_t top1 = 0;
};

NaiveBoundary Softmax(const float* z, int64_t vocab) {
  NaiveBoundary b;
  double max = z[0];
  for (int64_t i = 1; i < vocab; ++i) max = std::max<double>(max, z[i]);
  double sum = 0;
  b.probs.resize(vocab);
  for (int64_t i = 0; i < vocab; ++i) sum += b.probs[i] = std::exp(z[i] - max);
  for (double& p : b.probs) p /= sum;
  b.top1 = static_cast<int32_t>(std::max_element(z, z + vocab) - z);
  return b;
}

struct NaiveExit {
  int exit_loop = 0;
  int heads = 0;
  int gates = 0;
};

// MODEL_SPEC "Early exit", written out directly for position `p`.
NaiveExit NaiveExitAt(const ScoreResult& s, const LoadedModel& model, int64_t p,
                      const ExitPolicy& policy) {
  const int64_t vocab = s.vocab_size, d = model.config.hidden_size;
  const int max_loops = policy.max_loops == 0 ? s.num_loops : policy.max_loops;
  std::vector<NaiveBoundary> b;
  for (int t = 0; t < s.num_loops; ++t)
    b.push_back(Softmax(s.trace.logits[t].data() + p * vocab, vocab));
  auto hidden = [&](int t) { return s.trace.hidden[t].data() + p * d; };
  double survival = 1;
  int streak = 0;
  for (int t = 0; t < max_loops; ++t) {
    std::vector<double> sorted = b[t].probs;
    std::sort(sorted.rbegin(), sorted.rend());
    double entropy = 0;
    for (double q : b[t].probs) entropy -= q > 0 ? q * std::log(q) : 0;
    double kl = 0, cosine = 0, dot = 0, na = 0, nb = 0;
    if (t >= 1) {
      for (int64_t i = 0; i < vocab; ++i)
        kl += b[t].probs[i] * std::log(b[t].probs[i] / b[t - 1].probs[i]);
      for (int64_t i = 0; i < d; ++i) {
        dot += double{hidden(t)[i]} * hidden(t - 1)[i];
        na += double{hidden(t)[i]} * hidden(t)[i];
        nb += double{hidden(t - 1)[i]} * hidden(t - 1)[i];
      }
      cosine = dot / std::sqrt(na * nb);
    }
    streak = (t >= 1 && b[t].top1 == b[t - 1].top1) ? streak + 1 : 0;
    // λ_t = sigmoid(gate · RMSNorm(h_t) + bias).
    double ms = 0;
    for (int64_t i = 0; i < d; ++i) ms += double{hidden(t)[i]} * hidden(t)[i];
    const double inv = 1 / std::sqrt(ms / d + model.config.rms_norm_eps);
    double logit = model.weights.exit_gate_bias.At(0);
    for (int64_t i = 0; i < d; ++i) {
      logit +=
          model.weights.exit_gate.At(0, i) * hidden(t)[i] * inv * model.weights.final_norm.At(i);
    }
    survival *= 1 - 1 / (1 + std::exp(-logit));
    const double tau = policy.threshold;
    bool holds = false;
    switch (policy.criterion) {
      case ExitCriterion::kMaxProb:
        holds = sorted[0] >= tau;
        break;
      case ExitCriterion::kMargin:
        holds = sorted[0] - sorted[1] >= tau;
        break;
      case ExitCriterion::kEntropy:
        holds = entropy <= tau;
        break;
      case ExitCriterion::kKl:
        holds = t >= 1 && kl <= tau;
        break;
      case ExitCriterion::kTop1Stable:
        holds = streak >= tau;
        break;
      case ExitCriterion::kHiddenCosine:
        holds = t >= 1 && cosine >= tau;
        break;
      case ExitCriterion::kGate:
        holds = 1 - survival >= tau;
        break;
      case ExitCriterion::kNever:
        break;
    }
    if ((t >= policy.min_loops - 1 && holds) || t == max_loops - 1) {
      NaiveExit x{t, 0, policy.criterion == ExitCriterion::kGate ? t + 1 : 0};
      int first_head = t;  // criteria without head checks: the exit's own head
      switch (policy.criterion) {
        case ExitCriterion::kMaxProb:
        case ExitCriterion::kMargin:
        case ExitCriterion::kEntropy:
          first_head = std::min(t, policy.min_loops - 1);
          break;
        case ExitCriterion::kKl:
          first_head = std::min(t, std::max(0, policy.min_loops - 2));
          break;
        case ExitCriterion::kTop1Stable:
          first_head = 0;
          break;
        default:
          break;
      }
      x.heads = t - first_head + 1;
      return x;
    }
  }
  ADD_FAILURE() << "no exit";
  return {};
}

// Thresholds strictly between the distinct values `stat` takes on the
// unforced boundaries, so float-vs-double rounding cannot flip a decision.
std::vector<double> MidpointThresholds(const std::vector<SequenceRecord>& records,
                                       ExitCriterion criterion) {
  std::vector<double> grid = ThresholdGrid(records, criterion, 7);
  if (criterion == ExitCriterion::kTop1Stable) return grid;
  std::vector<double> mids;
  for (size_t i = 0; i + 1 < grid.size(); ++i) mids.push_back((grid[i] + grid[i + 1]) / 2);
  return mids;
}

class CalibrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testutil::TempDir();
    absl::Status s = testutil::WriteRandomCheckpoint(dir_->path(), TinyConfig(), 23, DType::kF32);
    ASSERT_TRUE(s.ok()) << s;
    absl::StatusOr<std::shared_ptr<const LoadedModel>> model = LoadModel(dir_->path());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = new std::shared_ptr<const LoadedModel>(*model);
  }
  static void TearDownTestSuite() {
    delete model_;
    delete dir_;
  }
  static const ModelConfig& config() { return (*model_)->config; }

  std::unique_ptr<Engine> MakeEngine() {
    EngineOptions options;
    options.num_threads = 2;
    options.block_size = 4;
    options.kv_cache_bytes = int64_t{8} << 20;
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(*model_, options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? std::move(*engine) : nullptr;
  }

  static std::vector<int32_t> Prompt(int n, int salt) {
    std::vector<int32_t> p;
    for (int i = 0; i < n; ++i) p.push_back((i * 13 + salt * 7 + 5) % 64);
    return p;
  }

  static testutil::TempDir* dir_;
  static std::shared_ptr<const LoadedModel>* model_;
};

testutil::TempDir* CalibrationTest::dir_ = nullptr;
std::shared_ptr<const LoadedModel>* CalibrationTest::model_ = nullptr;

const std::vector<ExitCriterion> kCriteria = {
    ExitCriterion::kMaxProb, ExitCriterion::kMargin,     ExitCriterion::kEntropy,
    ExitCriterion::kKl,      ExitCriterion::kTop1Stable, ExitCriterion::kHiddenCosine,
    ExitCriterion::kGate};

TEST_F(CalibrationTest, OfflineExitsAndFlopsEqualAStraightforwardLoop) {
  std::unique_ptr<Engine> engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  std::vector<std::vector<int32_t>> prompts = {Prompt(12, 1), Prompt(20, 2), Prompt(9, 3)};
  std::vector<ScoreResult> scores;
  std::vector<SequenceRecord> records;
  for (const auto& ids : prompts) {
    absl::StatusOr<ScoreResult> s = engine->Score(ids);
    ASSERT_TRUE(s.ok()) << s.status();
    absl::StatusOr<SequenceRecord> r = RecordSequence(**model_, *s, ids);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->num_positions, static_cast<int64_t>(ids.size()) - 1);
    scores.push_back(std::move(*s));
    records.push_back(std::move(*r));
  }
  const FlopModel flops(config());
  int checked = 0, distinct_exits = 0;
  for (ExitCriterion criterion : kCriteria) {
    const std::vector<double> taus = MidpointThresholds(records, criterion);
    ASSERT_GE(taus.size(), 2u) << ExitCriterionName(criterion);
    for (double tau : taus) {
      for (int min_loops : {1, 2, 3}) {
        for (int max_loops : {0, 3}) {
          const ExitPolicy policy = Policy(criterion, tau, min_loops, max_loops);
          ASSERT_TRUE(ValidateExitPolicy(policy, config()).ok());
          ExitTracker tracker(policy, kLoops);
          double done = 0, full = 0;
          std::vector<int> seen(kLoops, 0);
          for (size_t s = 0; s < records.size(); ++s) {
            for (int64_t p = 0; p < records[s].num_positions; ++p) {
              const PositionExit x = OfflineExit(records[s], p, policy, config(), tracker);
              const NaiveExit want = NaiveExitAt(scores[s], **model_, p, policy);
              ASSERT_EQ(x.exit_loop, want.exit_loop)
                  << ExitCriterionName(criterion) << " tau=" << tau << " min=" << min_loops
                  << " max=" << max_loops << " seq " << s << " pos " << p;
              EXPECT_EQ(x.exit_heads, want.heads) << ExitCriterionName(criterion);
              EXPECT_EQ(x.gate_evals, want.gates);
              EXPECT_EQ(x.propagate_fills, 0);
              done += flops.Done(p, want.exit_loop + 1, want.heads, want.gates, 0);
              full += flops.FullDepth(p);
              seen[want.exit_loop] = 1;
              ++checked;
            }
          }
          distinct_exits = std::max(distinct_exits, seen[0] + seen[1] + seen[2] + seen[3]);
          const PolicyEvaluation e = EvaluatePolicy(records, policy, config());
          EXPECT_NEAR(e.flops_done, done, 1e-9 * done);
          EXPECT_NEAR(e.flops_full, full, 1e-9 * full);
          EXPECT_NEAR(e.compute_saved, 1 - done / full, 1e-12);
        }
      }
    }
  }
  EXPECT_GT(checked, 1000);
  EXPECT_GE(distinct_exits, 3) << "the thresholds should spread exits over the loops";
}

// The engine itself, teacher-forced where it can be: with a full-depth prompt
// the first decode token runs under the policy with every earlier position at
// full depth, which is exactly what a Score pass records.
TEST_F(CalibrationTest, OfflineExitEqualsTheEnginesDecodeExit) {
  std::unique_ptr<Engine> engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  const FlopModel flops(config());
  int compared = 0;
  std::vector<int> seen(kLoops, 0);
  for (ExitCriterion criterion :
       {ExitCriterion::kMaxProb, ExitCriterion::kEntropy, ExitCriterion::kKl,
        ExitCriterion::kTop1Stable, ExitCriterion::kHiddenCosine, ExitCriterion::kGate}) {
    // Thresholds from a separate calibration set.
    std::vector<SequenceRecord> calib;
    for (int salt : {11, 12}) {
      const std::vector<int32_t> ids = Prompt(24, salt);
      absl::StatusOr<ScoreResult> s = engine->Score(ids);
      ASSERT_TRUE(s.ok()) << s.status();
      calib.push_back(*RecordSequence(**model_, *s, ids));
    }
    for (double tau : MidpointThresholds(calib, criterion)) {
      for (int min_loops : {1, 2}) {
        const ExitPolicy policy = Policy(criterion, tau, min_loops);
        for (int n : {5, 9, 14}) {
          const std::vector<int32_t> prompt = Prompt(n, n + static_cast<int>(criterion));
          GenerationRequest request;
          request.prompt = prompt;
          request.max_tokens = 2;
          request.policy = policy;
          absl::StatusOr<std::vector<GenerationResult>> r = engine->Generate({request});
          ASSERT_TRUE(r.ok()) << r.status();
          const GenerationResult& g = (*r)[0];
          ASSERT_EQ(g.tokens.size(), 2u);
          std::vector<int32_t> ids = prompt;
          ids.push_back(g.tokens[0].token);
          ids.push_back(g.tokens[1].token);
          absl::StatusOr<ScoreResult> s = engine->Score(ids);
          ASSERT_TRUE(s.ok()) << s.status();
          absl::StatusOr<SequenceRecord> rec = RecordSequence(**model_, *s, ids);
          ASSERT_TRUE(rec.ok()) << rec.status();
          ExitTracker tracker(policy, kLoops);
          const PositionExit x = OfflineExit(*rec, n, policy, config(), tracker);
          EXPECT_EQ(x.exit_loop, g.tokens[1].exit_loop)
              << ExitCriterionName(criterion) << " tau=" << tau << " min=" << min_loops
              << " n=" << n;
          // Same token: greedy sampling of z_e.
          EXPECT_EQ(rec->At(n, x.exit_loop).stats.top1, g.tokens[1].token);
          // Same compute: the prompt ran full depth, the decode token Done(...).
          double prompt_flops = 0;
          for (int p = 0; p < n; ++p) prompt_flops += flops.FullDepth(p);
          const double decode = flops.Done(n, x.exit_loop + 1, x.exit_heads, x.gate_evals, 0);
          EXPECT_NEAR(g.usage.flops_done, prompt_flops + decode, 1e-9 * g.usage.flops_done);
          seen[g.tokens[1].exit_loop] = 1;
          ++compared;
        }
      }
    }
  }
  EXPECT_GT(compared, 60);
  EXPECT_GE(seen[0] + seen[1] + seen[2] + seen[3], 3);
}

TEST_F(CalibrationTest, SweepHasStaticDepthRowsAndRejectsWhatCannotRun) {
  std::unique_ptr<Engine> engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  const std::vector<int32_t> ids = Prompt(16, 4);
  absl::StatusOr<ScoreResult> s = engine->Score(ids);
  ASSERT_TRUE(s.ok());
  const std::vector<SequenceRecord> records = {*RecordSequence(**model_, *s, ids)};
  SweepOptions options;
  options.criteria = kCriteria;
  options.thresholds_per_criterion = 20;
  absl::StatusOr<std::vector<PolicyEvaluation>> points = SweepPolicies(records, config(), options);
  ASSERT_TRUE(points.ok()) << points.status();
  std::vector<PolicyEvaluation> fixed;
  for (const PolicyEvaluation& e : *points) {
    if (IsStaticDepth(e)) fixed.push_back(e);
    EXPECT_TRUE(ValidateExitPolicy(e.policy, config()).ok());
  }
  ASSERT_EQ(fixed.size(), static_cast<size_t>(kLoops));
  for (int n = 1; n <= kLoops; ++n) {
    EXPECT_EQ(fixed[n - 1].policy.max_loops, n);
    EXPECT_DOUBLE_EQ(fixed[n - 1].mean_loops, n);
  }
  EXPECT_NEAR(fixed.back().compute_saved, 0, 1e-12);
  EXPECT_DOUBLE_EQ(fixed.back().nll_increase, 0);
  EXPECT_DOUBLE_EQ(fixed.back().top1_agreement, 1);
  EXPECT_GT(fixed.front().compute_saved, fixed[1].compute_saved);
  // top1_stable checks a head at every boundary: at full depth it must show
  // a negative saving.
  for (const PolicyEvaluation& e : *points) {
    if (e.policy.criterion == ExitCriterion::kTop1Stable && e.mean_loops == kLoops) {
      EXPECT_LT(e.compute_saved, 0);
    }
  }

  options.criteria = {ExitCriterion::kNever};
  EXPECT_THAT(SweepPolicies(records, config(), options).status().message(),
              HasSubstr("static-depth"));
  ModelConfig no_gate = config();
  no_gate.exit_gate = false;
  options.criteria = {ExitCriterion::kGate};
  EXPECT_THAT(SweepPolicies(records, no_gate, options).status().message(), HasSubstr("exit gate"));
  EXPECT_FALSE(SweepPolicies({}, config(), options).ok());
}

TEST(NamedPoliciesTest, WrittenFileLoadsBackAndMergesWithExistingPolicies) {
  ModelConfig model;
  model.num_loops = 4;
  ExitPolicy fast = Policy(ExitCriterion::kMaxProb, 0.25, 2);
  absl::StatusOr<std::string> text = MergeNamedPolicy(std::nullopt, "calibrated", fast);
  ASSERT_TRUE(text.ok()) << text.status();
  absl::StatusOr<std::map<std::string, ExitPolicy>> parsed = ParseNamedPolicies(*text, &model);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), 1u);
  EXPECT_EQ(parsed->at("calibrated"), fast);
  // The server's format: {"policies": {name: policy}}, each policy read by
  // ExitPolicyFromJson.
  const nlohmann::json json = nlohmann::json::parse(*text);
  absl::StatusOr<ExitPolicy> direct = ExitPolicyFromJson(json.at("policies").at("calibrated"));
  ASSERT_TRUE(direct.ok());
  EXPECT_EQ(*direct, fast);

  const std::string existing =
      R"({"policies": {"quality": {"criterion": "kl", "threshold": 0.01},
                       "calibrated": {"criterion": "never"}}, "comment": "kept"})";
  ExitPolicy cosine = Policy(ExitCriterion::kHiddenCosine, 0.9);
  absl::StatusOr<std::string> merged = MergeNamedPolicy(existing, "calibrated", cosine);
  ASSERT_TRUE(merged.ok()) << merged.status();
  parsed = ParseNamedPolicies(*merged, &model);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), 2u);
  EXPECT_EQ(parsed->at("calibrated"), cosine);
  EXPECT_EQ(parsed->at("quality"), Policy(ExitCriterion::kKl, 0.01));
  EXPECT_EQ(nlohmann::json::parse(*merged).at("comment"), "kept");
}

TEST(NamedPoliciesTest, BadFilesGiveClearErrors) {
  ModelConfig model;
  model.num_loops = 4;
  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"{not json", "invalid JSON"},
      {R"([1, 2])", R"(expected {"policies": {"name": {policy}}})"},
      {R"({"policy": {}})", R"(expected {"policies")"},
      {R"({"policies": {"a": {"criterion": "maxprob"}}})",
       R"(policy "a": unknown exit criterion "maxprob")"},
      {R"({"policies": {"b": {"criterion": "kl", "threshold": "low"}}})",
       R"(policy "b": exit policy field "threshold": expected a number)"},
      {R"({"policies": {"c": {"criterion": "kl", "tau": 1}}})", R"(unknown field "tau")"},
      {R"({"policies": {"d": {"criterion": "max_prob", "threshold": 1.5}}})",
       R"(policy "d": exit policy threshold for "max_prob")"},
      {R"({"policies": {"e": {"criterion": "never", "max_loops": 9}}})",
       R"(policy "e": exit policy max_loops)"},
      {R"({"policies": {"f": {"criterion": "gate", "threshold": 0.5}}})",
       R"(policy "f": exit policy criterion "gate" needs a model with an exit gate)"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::map<std::string, ExitPolicy>> parsed = ParseNamedPolicies(c.text, &model);
    ASSERT_FALSE(parsed.ok()) << c.text;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(parsed.status().message(), HasSubstr(c.message)) << c.text;
    // A file that does not parse is never overwritten by a merge (range
    // checks need the model, which the merge does not see).
    const bool needs_model = c.message.find("threshold for") != std::string::npos ||
                             c.message.find("max_loops") != std::string::npos ||
                             c.message.find("exit gate") != std::string::npos;
    if (!needs_model) {
      EXPECT_FALSE(MergeNamedPolicy(c.text, "x", ExitPolicy{}).ok()) << c.text;
    }
  }
  EXPECT_FALSE(MergeNamedPolicy(std::nullopt, "", ExitPolicy{}).ok());
}

PolicyEvaluation Point(ExitCriterion c, double saved, double nll_increase, double agreement = 1) {
  PolicyEvaluation e;
  e.policy.criterion = c;
  e.compute_saved = saved;
  e.nll_increase = nll_increase;
  e.top1_agreement = agreement;
  return e;
}

TEST(CalibrationSelectionTest, ParetoFrontKeepsOnlyUndominatedPointsOfTheCriterion) {
  const std::vector<PolicyEvaluation> evals = {
      Point(ExitCriterion::kMaxProb, 0.10, 0.001),  // 0: front
      Point(ExitCriterion::kMaxProb, 0.30, 0.020),  // 1: front
      Point(ExitCriterion::kMaxProb, 0.20, 0.030),  // 2: dominated by 1
      Point(ExitCriterion::kMaxProb, 0.05, 0.001),  // 3: dominated by 0
      Point(ExitCriterion::kEntropy, 0.90, 0.000),  // 4: other criterion
      Point(ExitCriterion::kMaxProb, 0.10, 0.001),  // 5: duplicate of 0
      Point(ExitCriterion::kMaxProb, -0.2, -0.01),  // 6: front (best quality)
  };
  EXPECT_EQ(ParetoFront(evals, ExitCriterion::kMaxProb), (std::vector<size_t>{6, 0, 1}));
  EXPECT_EQ(ParetoFront(evals, ExitCriterion::kEntropy), (std::vector<size_t>{4}));
  EXPECT_TRUE(ParetoFront(evals, ExitCriterion::kKl).empty());
}

TEST(CalibrationSelectionTest, SelectsTheCheapestPointMeetingTheTarget) {
  const std::vector<PolicyEvaluation> evals = {
      Point(ExitCriterion::kNever, 0.0, 0.0, 1.0),
      Point(ExitCriterion::kMaxProb, 0.40, 0.009, 0.97),
      Point(ExitCriterion::kMaxProb, 0.60, 0.011, 0.95),  // misses 1%
      Point(ExitCriterion::kEntropy, 0.40, 0.004, 0.99),  // ties on saved, better NLL
      Point(ExitCriterion::kKl, 0.20, 0.001, 0.995),
  };
  QualityTarget nll{QualityTarget::Kind::kMaxNllIncrease, 0.01};
  EXPECT_EQ(SelectCheapest(evals, nll), std::optional<size_t>(3));
  QualityTarget agree{QualityTarget::Kind::kMinAgreement, 0.99};
  EXPECT_EQ(SelectCheapest(evals, agree), std::optional<size_t>(3));
  agree.value = 0.995;
  EXPECT_EQ(SelectCheapest(evals, agree), std::optional<size_t>(4));
  agree.value = 1.5;
  EXPECT_EQ(SelectCheapest(evals, agree), std::nullopt);
  nll.value = -0.5;
  EXPECT_EQ(SelectCheapest(evals, nll), std::nullopt);
  // Exact ties prefer static depth, which checks nothing.
  const std::vector<PolicyEvaluation> tie = {Point(ExitCriterion::kMaxProb, 0.5, 0.006),
                                             Point(ExitCriterion::kNever, 0.5, 0.006)};
  EXPECT_EQ(SelectCheapest(tie, QualityTarget{}), std::optional<size_t>(1));
}

}  // namespace
}  // namespace loopserve

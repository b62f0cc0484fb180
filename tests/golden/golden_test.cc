// The CPU engine against the numpy reference on every config of the fixture
// matrix: per-loop exit-head logits, hidden states and router choices of a
// full-depth scoring pass, and greedy continuations with exit loops and
// compute accounting for every exit criterion and kv_fill mode, run one at a
// time, batched, and with prompts split into small prefill chunks.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/compute_accounting.h"
#include "engine/engine.h"
#include "engine/model_weights.h"
#include "gtest/gtest.h"
#include "tests/golden/golden_fixture.h"

namespace loopserve {
namespace {

using testing::GoldenCase;
using testing::GoldenFixture;

// The reference computes in float64 from the stored weights (bf16/f16 values
// are exact in f32), the engine in f32: differences are f32 rounding only,
// so one tolerance holds for every storage dtype. Relative to max(1, |ref|).
constexpr double kLogitTolerance = 1e-4;

class GoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string dir = testing::FixtureRoot() + "/" + GetParam();
    absl::StatusOr<std::shared_ptr<const LoadedModel>> model = LoadModel(dir);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *model;
    absl::StatusOr<GoldenFixture> fixture = testing::LoadGoldenFixture(dir);
    ASSERT_TRUE(fixture.ok()) << fixture.status();
    fixture_ = std::move(*fixture);
  }

  std::unique_ptr<Engine> MakeEngine(int max_batch_tokens = 512) {
    EngineOptions options;
    options.num_threads = 2;
    options.block_size = 4;  // small blocks: every prompt spans several
    options.kv_cache_bytes = int64_t{64} << 20;
    options.scheduler.max_batch_tokens = max_batch_tokens;
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(model_, options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? std::move(*engine) : nullptr;
  }

  GenerationRequest RequestFor(const GoldenCase& c) const {
    GenerationRequest r;
    r.prompt = fixture_.PromptIds(c.prompt_index);
    r.max_tokens = c.max_tokens;
    r.policy = c.policy;
    return r;
  }

  // Compares one engine result with its golden case.
  void ExpectMatches(const GoldenCase& c, const GenerationResult& r, const std::string& how) {
    SCOPED_TRACE(absl::StrCat(GetParam(), "/", c.name, " (", how, ")"));
    std::vector<int32_t> tokens;
    std::vector<int> loops;
    for (const GeneratedToken& t : r.tokens) {
      tokens.push_back(t.token);
      loops.push_back(t.exit_loop);
    }
    EXPECT_EQ(tokens, c.tokens);
    EXPECT_EQ(loops, c.exit_loops);
    EXPECT_EQ(r.finish_reason, FinishReason::kLength);
    // The usage covers the prompt at full depth too; the golden sums the
    // decode forwards only.
    const FlopModel flops(model_->config);
    double prompt_flops = 0;
    const int64_t prompt_len = static_cast<int64_t>(fixture_.PromptIds(c.prompt_index).size());
    for (int64_t p = 0; p < prompt_len; ++p) prompt_flops += flops.FullDepth(p);
    EXPECT_NEAR(r.usage.flops_done - prompt_flops, c.decode_flops_done,
                1e-9 * c.decode_flops_full);
    EXPECT_NEAR(r.usage.flops_full - prompt_flops, c.decode_flops_full,
                1e-9 * c.decode_flops_full);
  }

  std::shared_ptr<const LoadedModel> model_;
  GoldenFixture fixture_;
};

void ExpectClose(const std::vector<float>& got, const std::vector<float>& want, double tol,
                 const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0;
  size_t worst_at = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double err = std::abs(static_cast<double>(got[i]) - want[i]) /
                       std::max(1.0, std::abs(static_cast<double>(want[i])));
    if (err > worst) {
      worst = err;
      worst_at = i;
    }
  }
  EXPECT_LE(worst, tol) << what << ": worst relative error at " << worst_at << " (got "
                        << got[worst_at] << ", want " << want[worst_at] << ")";
}

TEST_P(GoldenTest, ScoringMatchesReferencePerLoop) {
  std::unique_ptr<Engine> engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  const ModelConfig& config = model_->config;
  for (int j = 0; j < fixture_.num_prompts; ++j) {
    const std::vector<int32_t> ids = fixture_.PromptIds(j);
    absl::StatusOr<ScoreResult> score = engine->Score(ids);
    ASSERT_TRUE(score.ok()) << score.status();
    const int64_t n = static_cast<int64_t>(ids.size());
    const std::vector<float> logits = fixture_.Floats(j, "exit_logits");
    const std::vector<float> hidden = fixture_.Floats(j, "hidden");
    const int64_t v = config.vocab_size, d = config.hidden_size;
    ASSERT_EQ(static_cast<int64_t>(logits.size()), config.num_loops * n * v);
    for (int t = 0; t < config.num_loops; ++t) {
      const std::string where = absl::StrCat("prompt ", j, " loop ", t);
      ExpectClose(score->trace.logits[t],
                  std::vector<float>(logits.begin() + t * n * v, logits.begin() + (t + 1) * n * v),
                  kLogitTolerance, "exit logits " + where);
      ExpectClose(score->trace.hidden[t],
                  std::vector<float>(hidden.begin() + t * n * d, hidden.begin() + (t + 1) * n * d),
                  kLogitTolerance, "hidden " + where);
    }
    int routers_checked = 0;
    for (const auto& [key, experts] : score->trace.router) {
      const std::vector<int32_t> want = fixture_.Ints(j, "router." + key);
      ASSERT_FALSE(want.empty()) << "no golden router choices for " << key;
      EXPECT_EQ(experts, want) << "router " << key << " prompt " << j;
      ++routers_checked;
    }
    const bool any_moe = config.recurrent_ffn == FfnKind::kMoe ||
                         (config.num_prelude_layers > 0 && config.prelude_ffn == FfnKind::kMoe) ||
                         (config.num_coda_layers > 0 && config.coda_ffn == FfnKind::kMoe);
    EXPECT_EQ(routers_checked > 0, any_moe);
  }
}

TEST_P(GoldenTest, GreedyContinuationsOneAtATime) {
  std::unique_ptr<Engine> engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  ASSERT_FALSE(fixture_.cases.empty());
  for (const GoldenCase& c : fixture_.cases) {
    absl::StatusOr<std::vector<GenerationResult>> r = engine->Generate({RequestFor(c)});
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectMatches(c, (*r)[0], "alone");
  }
  EXPECT_EQ(engine->kv_cache().blocks().NumUsedBlocks(), 0) << "finished sequences keep blocks";
}

TEST_P(GoldenTest, GreedyContinuationsBatched) {
  std::unique_ptr<Engine> engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  std::vector<GenerationRequest> requests;
  for (const GoldenCase& c : fixture_.cases) requests.push_back(RequestFor(c));
  absl::StatusOr<std::vector<GenerationResult>> r = engine->Generate(requests);
  ASSERT_TRUE(r.ok()) << r.status();
  for (size_t i = 0; i < fixture_.cases.size(); ++i) {
    ExpectMatches(fixture_.cases[i], (*r)[i], "batched");
  }
}

TEST_P(GoldenTest, GreedyContinuationsWithChunkedPrefill) {
  // A 3-token budget splits every prompt into chunks that share steps with
  // other sequences' decodes.
  std::unique_ptr<Engine> engine = MakeEngine(/*max_batch_tokens=*/3);
  ASSERT_NE(engine, nullptr);
  std::vector<GenerationRequest> requests;
  for (const GoldenCase& c : fixture_.cases) requests.push_back(RequestFor(c));
  absl::StatusOr<std::vector<GenerationResult>> r = engine->Generate(requests);
  ASSERT_TRUE(r.ok()) << r.status();
  for (size_t i = 0; i < fixture_.cases.size(); ++i) {
    ExpectMatches(fixture_.cases[i], (*r)[i], "chunked");
  }
}

INSTANTIATE_TEST_SUITE_P(Matrix, GoldenTest,
                         ::testing::Values("base", "prelude_coda", "all_moe", "sigmoid_router",
                                           "gqa_qknorm", "adaln", "exit_gate", "untied", "bf16",
                                           "dense_recurrent", "vanilla", "f16", "sharded"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace loopserve

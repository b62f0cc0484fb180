// Tests engine/engine on a small random checkpoint: request validation, cancel,
// stop tokens, seeded sampling, logprobs, preemption under a tiny KV pool,
// Score against generation, usage accounting, and a batch of mixed exit
// policies against each policy run alone.
#include "engine/engine.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/compute_accounting.h"
#include "engine/model_weights.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/unit/testing/safetensors_writer.h"

namespace loopserve {
namespace {

using ::testing::HasSubstr;

constexpr int kLoops = 4;
constexpr int kBlockSize = 4;

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
          {"num_shared_experts", 1},
          {"iter_adaln_rank", 4}};
}

ExitPolicy Policy(ExitCriterion criterion, double threshold, KvFill fill = KvFill::kReuse) {
  ExitPolicy p;
  p.criterion = criterion;
  p.threshold = threshold;
  p.kv_fill = fill;
  return p;
}

std::vector<int32_t> TokensOf(const GenerationResult& r) {
  std::vector<int32_t> out;
  for (const GeneratedToken& t : r.tokens) out.push_back(t.token);
  return out;
}

std::vector<int> ExitLoopsOf(const GenerationResult& r) {
  std::vector<int> out;
  for (const GeneratedToken& t : r.tokens) out.push_back(t.exit_loop);
  return out;
}

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testutil::TempDir();
    absl::Status s = testutil::WriteRandomCheckpoint(dir_->path(), TinyConfig(), 17, DType::kF32);
    ASSERT_TRUE(s.ok()) << s;
    absl::StatusOr<std::shared_ptr<const LoadedModel>> model = LoadModel(dir_->path());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = new std::shared_ptr<const LoadedModel>(*model);
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }

  static const ModelConfig& config() { return (*model_)->config; }

  // kv_blocks = 0: a large pool.
  std::unique_ptr<Engine> MakeEngine(int kv_blocks = 0, int max_batch_tokens = 512,
                                     int max_num_seqs = 64) {
    EngineOptions options;
    options.num_threads = 2;
    options.block_size = kBlockSize;
    options.kv_cache_bytes = kv_blocks == 0
                                 ? int64_t{8} << 20
                                 : KvCache::BytesPerToken(config()) * kBlockSize * kv_blocks;
    options.scheduler.max_batch_tokens = max_batch_tokens;
    options.scheduler.max_num_seqs = max_num_seqs;
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(*model_, options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? std::move(*engine) : nullptr;
  }

  static GenerationRequest Request(std::vector<int32_t> prompt, int max_tokens,
                                   ExitPolicy policy = {}) {
    GenerationRequest r;
    r.prompt = std::move(prompt);
    r.max_tokens = max_tokens;
    r.policy = policy;
    return r;
  }

  static std::vector<int32_t> Prompt(int n, int salt = 0) {
    std::vector<int32_t> p;
    for (int i = 0; i < n; ++i) p.push_back((i * 13 + salt * 7 + 5) % 64);
    return p;
  }

  GenerationResult GenerateOne(Engine& engine, GenerationRequest request) {
    absl::StatusOr<std::vector<GenerationResult>> r = engine.Generate({std::move(request)});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? (*r)[0] : GenerationResult{};
  }

  static testutil::TempDir* dir_;
  static std::shared_ptr<const LoadedModel>* model_;
};

testutil::TempDir* EngineTest::dir_ = nullptr;
std::shared_ptr<const LoadedModel>* EngineTest::model_ = nullptr;

// log_softmax(row)[token].
double LogSoftmaxAt(const float* row, int64_t vocab, int32_t token) {
  double max = row[0];
  for (int64_t i = 1; i < vocab; ++i) max = std::max<double>(max, row[i]);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(row[i] - max);
  return row[token] - max - std::log(sum);
}

TEST_F(EngineTest, InvalidRequestsNameTheFieldAndLeaveTheEngineServing) {
  std::unique_ptr<Engine> engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  struct Case {
    std::string what;
    GenerationRequest request;
    absl::StatusCode code;
    std::string field;
  };
  std::vector<Case> cases;
  cases.push_back({"empty prompt", Request({}, 4), absl::StatusCode::kInvalidArgument, "prompt"});
  cases.push_back({"id >= vocab", Request({1, 64, 2}, 4), absl::StatusCode::kInvalidArgument,
                   "prompt token 1"});
  cases.push_back(
      {"negative id", Request({-1}, 4), absl::StatusCode::kInvalidArgument, "prompt token 0"});
  cases.push_back(
      {"max_tokens 0", Request({1, 2}, 0), absl::StatusCode::kInvalidArgument, "max_tokens"});
  cases.push_back(
      {"past context", Request(Prompt(40), 25), absl::StatusCode::kInvalidArgument, "max_tokens"});
  {
    GenerationRequest r = Request({1, 2}, 4);
    r.sampling.temperature = -0.5f;
    cases.push_back({"temperature", r, absl::StatusCode::kInvalidArgument, "temperature"});
    r = Request({1, 2}, 4);
    r.sampling.temperature = std::numeric_limits<float>::quiet_NaN();
    cases.push_back({"temperature nan", r, absl::StatusCode::kInvalidArgument, "temperature"});
    r = Request({1, 2}, 4);
    r.sampling.top_p = 0;
    cases.push_back({"top_p", r, absl::StatusCode::kInvalidArgument, "top_p"});
    r = Request({1, 2}, 4);
    r.sampling.top_k = -1;
    cases.push_back({"top_k", r, absl::StatusCode::kInvalidArgument, "top_k"});
    r = Request({1, 2}, 4);
    r.sampling.logprobs = kMaxLogprobs + 1;
    cases.push_back({"logprobs", r, absl::StatusCode::kInvalidArgument, "logprobs"});
  }
  cases.push_back({"gate without exit gate", Request({1, 2}, 4, Policy(ExitCriterion::kGate, 0.5)),
                   absl::StatusCode::kInvalidArgument, "exit_gate"});
  {
    ExitPolicy p = Policy(ExitCriterion::kMaxProb, 0.5);
    p.max_loops = kLoops + 1;
    cases.push_back(
        {"max_loops > L", Request({1, 2}, 4, p), absl::StatusCode::kInvalidArgument, "max_loops"});
    p = Policy(ExitCriterion::kMaxProb, 0.5);
    p.min_loops = 0;
    cases.push_back(
        {"min_loops 0", Request({1, 2}, 4, p), absl::StatusCode::kInvalidArgument, "min_loops"});
    p = Policy(ExitCriterion::kMaxProb, 1.5);
    cases.push_back(
        {"max_prob > 1", Request({1, 2}, 4, p), absl::StatusCode::kInvalidArgument, "threshold"});
  }
  for (Case& c : cases) {
    absl::StatusOr<int64_t> id = engine->Add(c.request);
    ASSERT_FALSE(id.ok()) << c.what;
    EXPECT_EQ(id.status().code(), c.code) << c.what << ": " << id.status();
    EXPECT_THAT(id.status().message(), HasSubstr(c.field)) << c.what;
    EXPECT_FALSE(engine->HasWork()) << c.what << " left something queued";
  }
  // Exactly at the context limit is fine.
  absl::StatusOr<int64_t> at_limit = engine->Add(Request(Prompt(40), 24));
  EXPECT_TRUE(at_limit.ok()) << at_limit.status();
  ASSERT_TRUE(engine->Cancel(*at_limit));
  ASSERT_TRUE(engine->Step().ok());
  // And the engine still serves.
  GenerationResult r = GenerateOne(*engine, Request({1, 2, 3}, 5));
  EXPECT_EQ(r.tokens.size(), 5u);
  EXPECT_EQ(r.finish_reason, FinishReason::kLength);
}

TEST_F(EngineTest, RequestLargerThanTheKvPoolIsResourceExhausted) {
  std::unique_ptr<Engine> engine = MakeEngine(/*kv_blocks=*/4);  // 16 tokens
  ASSERT_NE(engine, nullptr);
  absl::StatusOr<int64_t> id = engine->Add(Request(Prompt(10), 7));
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(id.status().message(), HasSubstr("KV pool"));
  GenerationResult r = GenerateOne(*engine, Request(Prompt(10), 6));  // 16: fits
  EXPECT_EQ(r.tokens.size(), 6u);
}

TEST_F(EngineTest, GenerateWithOneBadRequestQueuesNothing) {
  std::unique_ptr<Engine> engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  absl::StatusOr<std::vector<GenerationResult>> r =
      engine->Generate({Request({1, 2}, 3), Request({}, 3)});
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(engine->HasWork()) << "the valid request of a rejected batch was left queued";
  EXPECT_EQ(engine->kv_cache().blocks().NumUsedBlocks(), 0);
}

TEST_F(EngineTest, CancelFinishesWithCancelledAndFreesBlocks) {
  std::unique_ptr<Engine> engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  absl::StatusOr<int64_t> a = engine->Add(Request(Prompt(9), 20));
  absl::StatusOr<int64_t> b = engine->Add(Request(Prompt(5, 1), 6));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(engine->Step().ok());
  ASSERT_TRUE(engine->Step().ok());
  ASSERT_NE(engine->kv_cache().blocks().Table(*a), nullptr);
  const int32_t a_blocks =
      static_cast<int32_t>(engine->kv_cache().blocks().Table(*a)->blocks.size());
  const int32_t used = engine->kv_cache().blocks().NumUsedBlocks();
  EXPECT_FALSE(engine->Cancel(12345));
  ASSERT_TRUE(engine->Cancel(*a));
  absl::StatusOr<std::vector<SequenceUpdate>> updates = engine->Step();
  ASSERT_TRUE(updates.ok()) << updates.status();
  bool saw_cancel = false;
  for (const SequenceUpdate& u : *updates) {
    if (u.id != *a) continue;
    saw_cancel = true;
    EXPECT_TRUE(u.finished);
    EXPECT_EQ(u.finish_reason, FinishReason::kCancelled);
    EXPECT_TRUE(u.new_tokens.empty());
  }
  EXPECT_TRUE(saw_cancel);
  EXPECT_EQ(engine->kv_cache().blocks().Table(*a), nullptr);
  // b's decode this step may have taken a block; a's are all back.
  EXPECT_LE(engine->kv_cache().blocks().NumUsedBlocks(), used - a_blocks + 1);
  EXPECT_FALSE(engine->Cancel(*a)) << "a finished sequence is unknown";
  // b runs to completion.
  FinishReason b_reason = FinishReason::kNone;
  while (engine->HasWork()) {
    absl::StatusOr<std::vector<SequenceUpdate>> u = engine->Step();
    ASSERT_TRUE(u.ok()) << u.status();
    for (const SequenceUpdate& x : *u) {
      EXPECT_NE(x.id, *a);
      if (x.finished) b_reason = x.finish_reason;
    }
  }
  EXPECT_EQ(b_reason, FinishReason::kLength);
  EXPECT_EQ(engine->kv_cache().blocks().NumUsedBlocks(), 0);
}

TEST_F(EngineTest, StopTokenFinishesWithStop) {
  std::unique_ptr<Engine> engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  const GenerationResult full = GenerateOne(*engine, Request(Prompt(6), 12));
  ASSERT_EQ(full.tokens.size(), 12u);
  const std::vector<int32_t> tokens = TokensOf(full);
  const int32_t stop = tokens[3];
  const size_t first = std::find(tokens.begin(), tokens.end(), stop) - tokens.begin();
  GenerationRequest req = Request(Prompt(6), 12);
  req.stop_token_ids = {stop};
  const GenerationResult stopped = GenerateOne(*engine, req);
  EXPECT_EQ(stopped.finish_reason, FinishReason::kStop);
  EXPECT_EQ(TokensOf(stopped), std::vector<int32_t>(tokens.begin(), tokens.begin() + first + 1));
  EXPECT_EQ(stopped.usage.completion_tokens, static_cast<int64_t>(first + 1));
  // A stop id that never comes changes nothing.
  int32_t absent = 0;
  while (std::find(tokens.begin(), tokens.end(), absent) != tokens.end()) ++absent;
  req.stop_token_ids = {absent};
  const GenerationResult unstopped = GenerateOne(*engine, req);
  EXPECT_EQ(unstopped.finish_reason, FinishReason::kLength);
  EXPECT_EQ(TokensOf(unstopped), tokens);
  EXPECT_EQ(engine->kv_cache().blocks().NumUsedBlocks(), 0);
}

TEST_F(EngineTest, SeededSamplingIsReproducible) {
  std::unique_ptr<Engine> engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  auto sampled = [&](uint64_t seed) {
    GenerationRequest r = Request(Prompt(5), 24);
    r.sampling.temperature = 1.0f;
    r.sampling.seed = seed;
    return r;
  };
  const GenerationResult a = GenerateOne(*engine, sampled(7));
  const GenerationResult b = GenerateOne(*engine, sampled(7));
  const GenerationResult c = GenerateOne(*engine, sampled(8));
  ASSERT_EQ(a.tokens.size(), 24u);
  EXPECT_EQ(TokensOf(a), TokensOf(b));
  EXPECT_NE(TokensOf(a), TokensOf(c));
  // Same seeds in one batch, next to each other: still the same stream.
  absl::StatusOr<std::vector<GenerationResult>> batch =
      engine->Generate({sampled(8), sampled(7), Request(Prompt(3), 5)});
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(TokensOf((*batch)[0]), TokensOf(c));
  EXPECT_EQ(TokensOf((*batch)[1]), TokensOf(a));
  // Greedy differs from sampling at temperature 1 somewhere.
  EXPECT_NE(TokensOf(GenerateOne(*engine, Request(Prompt(5), 24))), TokensOf(a));
}

TEST_F(EngineTest, LogprobsReturnsNSortedAlternatives) {
  std::unique_ptr<Engine> engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  GenerationRequest req = Request(Prompt(5), 6);
  req.sampling.logprobs = 5;
  const GenerationResult r = GenerateOne(*engine, req);
  ASSERT_EQ(r.tokens.size(), 6u);
  for (const GeneratedToken& t : r.tokens) {
    ASSERT_EQ(t.top_logprobs.size(), 5u);
    double mass = 0;
    for (size_t i = 0; i < t.top_logprobs.size(); ++i) {
      EXPECT_LE(t.top_logprobs[i].second, 0.0f);
      mass += std::exp(t.top_logprobs[i].second);
      if (i > 0) {
        EXPECT_GE(t.top_logprobs[i - 1].second, t.top_logprobs[i].second);
      }
    }
    EXPECT_LE(mass, 1.0 + 1e-5);
    // Greedy picks the most likely token, whose logprob is the first entry.
    EXPECT_EQ(t.top_logprobs[0].first, t.token);
    EXPECT_FLOAT_EQ(t.top_logprobs[0].second, t.logprob);
  }
  req.sampling.logprobs = 0;
  const GenerationResult none = GenerateOne(*engine, req);
  for (const GeneratedToken& t : none.tokens) {
    EXPECT_TRUE(t.top_logprobs.empty());
  }
  EXPECT_EQ(TokensOf(none), TokensOf(r));
}

TEST_F(EngineTest, TinyPoolPreemptsAndNeverPolicyMatchesLargePool) {
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 4; ++i) requests.push_back(Request(Prompt(6, i), 10));
  std::unique_ptr<Engine> large = MakeEngine();
  std::unique_ptr<Engine> tiny = MakeEngine(/*kv_blocks=*/6);  // 24 tokens for 4 × 15
  ASSERT_NE(large, nullptr);
  ASSERT_NE(tiny, nullptr);
  absl::StatusOr<std::vector<GenerationResult>> want = large->Generate(requests);
  absl::StatusOr<std::vector<GenerationResult>> got = tiny->Generate(requests);
  ASSERT_TRUE(want.ok()) << want.status();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(large->scheduler().num_preemptions(), 0);
  EXPECT_GT(tiny->scheduler().num_preemptions(), 0);
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ((*got)[i].finish_reason, FinishReason::kLength) << i;
    EXPECT_EQ(TokensOf((*got)[i]), TokensOf((*want)[i])) << i;
    EXPECT_EQ(ExitLoopsOf((*got)[i]), ExitLoopsOf((*want)[i])) << i;
    // Recomputed tokens count again: the preempted run did at least as much.
    EXPECT_GE((*got)[i].usage.loops_full, (*want)[i].usage.loops_full) << i;
  }
  EXPECT_EQ(tiny->kv_cache().blocks().NumUsedBlocks(), 0);

  // Early-exit requests under the same pressure all complete too.
  std::vector<GenerationRequest> early;
  for (int i = 0; i < 4; ++i) {
    early.push_back(Request(Prompt(6, i), 10, Policy(ExitCriterion::kMaxProb, 0.1)));
  }
  absl::StatusOr<std::vector<GenerationResult>> e = tiny->Generate(early);
  ASSERT_TRUE(e.ok()) << e.status();
  for (const GenerationResult& r : *e) {
    EXPECT_EQ(r.tokens.size(), 10u);
    EXPECT_EQ(r.finish_reason, FinishReason::kLength);
  }
}

TEST_F(EngineTest, ScoreLastLoopGivesTheFirstGreedyTokenAndExitLoopsTheirTokens) {
  std::unique_ptr<Engine> engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  const int64_t vocab = config().vocab_size;
  const std::vector<int32_t> prompt = Prompt(7);
  const int64_t n = static_cast<int64_t>(prompt.size());
  absl::StatusOr<ScoreResult> score = engine->Score(prompt);
  ASSERT_TRUE(score.ok()) << score.status();
  EXPECT_EQ(engine->kv_cache().blocks().NumUsedBlocks(), 0) << "Score keeps its blocks";
  ASSERT_EQ(score->num_loops, kLoops);
  ASSERT_EQ(score->trace.logits.size(), static_cast<size_t>(kLoops));
  for (int t = 0; t < kLoops; ++t) {
    ASSERT_EQ(score->trace.logits[t].size(), static_cast<size_t>(n * vocab));
  }
  EXPECT_NE(score->trace.logits[0], score->trace.logits[kLoops - 1]);

  // The first token samples from z_{L-1} of the last prompt position.
  GenerationRequest req = Request(prompt, 2, Policy(ExitCriterion::kMaxProb, 0.05));
  req.sampling.logprobs = kMaxLogprobs;
  const GenerationResult r = GenerateOne(*engine, req);
  ASSERT_EQ(r.tokens.size(), 2u);
  const float* last = score->trace.logits[kLoops - 1].data() + (n - 1) * vocab;
  EXPECT_EQ(r.tokens[0].token, std::max_element(last, last + vocab) - last);
  EXPECT_EQ(r.tokens[0].exit_loop, kLoops - 1);
  for (const auto& [tok, lp] : r.tokens[0].top_logprobs) {
    EXPECT_NEAR(lp, LogSoftmaxAt(last, vocab, tok), 1e-4) << tok;
  }

  // The second token was produced at loop e by a decode over a full-depth
  // prompt: it must equal z_e of Score(prompt + first token) at the end.
  std::vector<int32_t> extended = prompt;
  extended.push_back(r.tokens[0].token);
  absl::StatusOr<ScoreResult> score2 = engine->Score(extended);
  ASSERT_TRUE(score2.ok()) << score2.status();
  const int e = r.tokens[1].exit_loop;
  ASSERT_GE(e, 0);
  ASSERT_LT(e, kLoops);
  const float* z = score2->trace.logits[e].data() + n * vocab;
  EXPECT_EQ(r.tokens[1].token, std::max_element(z, z + vocab) - z);
  for (const auto& [tok, lp] : r.tokens[1].top_logprobs) {
    EXPECT_NEAR(lp, LogSoftmaxAt(z, vocab, tok), 1e-4) << tok;
  }
}

TEST_F(EngineTest, ScoreRejectsBadInputAndReleasesBlocks) {
  std::unique_ptr<Engine> engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->Score({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Score(std::vector<int32_t>(65, 1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Score({1, 64}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->kv_cache().blocks().NumUsedBlocks(), 0);
  EXPECT_EQ(engine->kv_cache().blocks().NumSequences(), 0);
}

// Usage figures rebuilt from the returned exit loops with the FLOP model.
void ExpectUsageMatchesExitLoops(const ModelConfig& config, const GenerationResult& r,
                                 int64_t prompt_len, bool head_every_loop, bool propagate = false) {
  const FlopModel flops(config);
  double full = 0, done = 0;
  int64_t loops = 0;
  for (int64_t p = 0; p < prompt_len; ++p) {
    full += flops.FullDepth(p);
    done += flops.FullDepth(p);
    loops += config.num_loops;
  }
  // Generated token i (i >= 1) came from the forward of position prompt_len + i - 1.
  for (size_t i = 1; i < r.tokens.size(); ++i) {
    const int64_t pos = prompt_len + static_cast<int64_t>(i) - 1;
    const int e = r.tokens[i].exit_loop;
    full += flops.FullDepth(pos);
    const int fills = propagate ? config.num_recurrent_layers * (config.num_loops - 1 - e) : 0;
    done += flops.Done(pos, e + 1, head_every_loop ? e + 1 : 1, 0, fills);
    loops += e + 1;
  }
  const int64_t run = prompt_len + static_cast<int64_t>(r.tokens.size()) - 1;
  EXPECT_EQ(r.usage.prompt_tokens, prompt_len);
  EXPECT_EQ(r.usage.completion_tokens, static_cast<int64_t>(r.tokens.size()));
  EXPECT_EQ(r.usage.loops_full, run * config.num_loops);
  EXPECT_EQ(r.usage.loops_executed, loops);
  EXPECT_LE(r.usage.loops_executed, r.usage.loops_full);
  EXPECT_NEAR(r.usage.flops_full, full, 1e-9 * full);
  EXPECT_NEAR(r.usage.flops_done, done, 1e-9 * full);
  EXPECT_DOUBLE_EQ(r.usage.ComputeSaved(), 1.0 - r.usage.flops_done / r.usage.flops_full);
}

TEST_F(EngineTest, UsageAccountsEveryForward) {
  std::unique_ptr<Engine> engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  const std::vector<int32_t> prompt = Prompt(6);
  const GenerationResult never = GenerateOne(*engine, Request(prompt, 10));
  ExpectUsageMatchesExitLoops(config(), never, 6, false);
  EXPECT_EQ(never.usage.flops_done, never.usage.flops_full);
  EXPECT_EQ(never.usage.ComputeSaved(), 0.0);
  EXPECT_EQ(never.usage.loops_executed, never.usage.loops_full);

  const GenerationResult early =
      GenerateOne(*engine, Request(prompt, 10, Policy(ExitCriterion::kMaxProb, 0.05)));
  ExpectUsageMatchesExitLoops(config(), early, 6, true);
  EXPECT_LT(early.usage.loops_executed, early.usage.loops_full) << "threshold exits nothing";
  EXPECT_GT(early.usage.ComputeSaved(), 0.0);

  const GenerationResult propagate = GenerateOne(
      *engine, Request(prompt, 10, Policy(ExitCriterion::kMaxProb, 0.05, KvFill::kPropagate)));
  ExpectUsageMatchesExitLoops(config(), propagate, 6, true, /*propagate=*/true);
  EXPECT_LT(propagate.usage.loops_executed, propagate.usage.loops_full);
}

TEST_F(EngineTest, MixedPoliciesInOneBatchEqualEachAlone) {
  std::unique_ptr<Engine> engine = MakeEngine();
  ASSERT_NE(engine, nullptr);
  std::vector<GenerationRequest> requests = {
      Request(Prompt(6, 0), 10, Policy(ExitCriterion::kMaxProb, 0.05)),
      Request(Prompt(5, 1), 10, Policy(ExitCriterion::kEntropy, 3.8)),
      Request(Prompt(7, 2), 10, Policy(ExitCriterion::kNever, 0)),
      Request(Prompt(4, 3), 10, Policy(ExitCriterion::kMaxProb, 0.05, KvFill::kPropagate)),
      Request(Prompt(6, 0), 10, Policy(ExitCriterion::kMaxProb, 0.05, KvFill::kPropagate)),
  };
  std::vector<GenerationResult> alone;
  for (const GenerationRequest& r : requests) alone.push_back(GenerateOne(*engine, r));
  absl::StatusOr<std::vector<GenerationResult>> batch = engine->Generate(requests);
  ASSERT_TRUE(batch.ok()) << batch.status();
  bool any_early = false;
  for (size_t i = 0; i < requests.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("request ", i));
    EXPECT_EQ(TokensOf((*batch)[i]), TokensOf(alone[i]));
    EXPECT_EQ(ExitLoopsOf((*batch)[i]), ExitLoopsOf(alone[i]));
    EXPECT_NEAR((*batch)[i].usage.flops_done, alone[i].usage.flops_done,
                1e-9 * alone[i].usage.flops_full);
    for (int e : ExitLoopsOf(alone[i])) any_early |= e < kLoops - 1;
  }
  EXPECT_TRUE(any_early) << "thresholds exercise no early exit";
  for (int e : ExitLoopsOf(alone[2])) {
    EXPECT_EQ(e, kLoops - 1);
  }
  EXPECT_EQ(alone[2].usage.ComputeSaved(), 0.0);
}

// A preempted early-exit sequence recomputes each generated token only to
// the loop it exited at (filling its skipped loops' K/V as its policy does)
// and then decodes its last token under the policy again, so KV pressure
// never changes what a request generates.
TEST_F(EngineTest, PreemptedEarlyExitRequestsMatchTheUnpreemptedRun) {
  for (KvFill fill : {KvFill::kReuse, KvFill::kPropagate}) {
    SCOPED_TRACE(fill == KvFill::kReuse ? "reuse" : "propagate");
    std::vector<GenerationRequest> requests;
    for (int i = 0; i < 4; ++i) {
      requests.push_back(Request(Prompt(6, i), 12, Policy(ExitCriterion::kMaxProb, 0.05, fill)));
    }
    requests.push_back(Request(Prompt(5, 4), 12, Policy(ExitCriterion::kEntropy, 3.8, fill)));
    std::unique_ptr<Engine> large = MakeEngine();
    std::unique_ptr<Engine> tiny = MakeEngine(/*kv_blocks=*/7);
    ASSERT_NE(large, nullptr);
    ASSERT_NE(tiny, nullptr);
    absl::StatusOr<std::vector<GenerationResult>> want = large->Generate(requests);
    absl::StatusOr<std::vector<GenerationResult>> got = tiny->Generate(requests);
    ASSERT_TRUE(want.ok()) << want.status();
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_GT(tiny->scheduler().num_preemptions(), 0);
    std::set<int> exit_loops;
    for (size_t i = 0; i < requests.size(); ++i) {
      SCOPED_TRACE(absl::StrCat("request ", i));
      EXPECT_EQ(TokensOf((*got)[i]), TokensOf((*want)[i]));
      EXPECT_EQ(ExitLoopsOf((*got)[i]), ExitLoopsOf((*want)[i]));
      for (int e : ExitLoopsOf((*want)[i])) exit_loops.insert(e);
      // Logprobs see any K/V the replay got wrong, long before argmaxes do.
      ASSERT_EQ((*got)[i].tokens.size(), (*want)[i].tokens.size());
      for (size_t t = 0; t < (*want)[i].tokens.size(); ++t) {
        EXPECT_NEAR((*got)[i].tokens[t].logprob, (*want)[i].tokens[t].logprob, 1e-5) << t;
      }
    }
    // Mixed exits (some early, some not) or the test proves nothing.
    EXPECT_GE(exit_loops.size(), 2u);
    EXPECT_LT(*exit_loops.begin(), kLoops - 1);
    EXPECT_EQ(tiny->kv_cache().blocks().NumUsedBlocks(), 0);
  }
}

}  // namespace
}  // namespace loopserve

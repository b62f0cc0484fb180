// Tests engine/sampler: greedy ties, determinism per seed, the empirical
// distribution under temperature / top-k / top-p, logprobs, validation.
#include "engine/sampler.h"

#include <cmath>
#include <cstdint>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loopserve {
namespace {

using ::testing::HasSubstr;

SamplingParams Params(float temperature, int top_k = 0, float top_p = 1, uint64_t seed = 0,
                      int logprobs = 0) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.seed = seed;
  p.logprobs = logprobs;
  return p;
}

std::vector<double> Softmax(const std::vector<float>& logits, double temperature = 1) {
  double max = logits[0];
  for (float l : logits) max = std::max<double>(max, l);
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    p[i] = std::exp((logits[i] - max) / temperature);
    sum += p[i];
  }
  for (double& x : p) x /= sum;
  return p;
}

std::vector<double> Frequencies(Sampler& sampler, const std::vector<float>& logits, int n) {
  std::vector<double> freq(logits.size(), 0);
  for (int i = 0; i < n; ++i) {
    freq[sampler.Sample(logits.data(), static_cast<int64_t>(logits.size())).token] += 1.0 / n;
  }
  return freq;
}

std::vector<int32_t> Draw(Sampler& sampler, const std::vector<float>& logits, int n) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(sampler.Sample(logits.data(), static_cast<int64_t>(logits.size())).token);
  }
  return out;
}

const std::vector<float> kLogits = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f};

TEST(Sampler, GreedyPicksArgmaxAndLowerIndexOnTies) {
  Sampler sampler(Params(0));
  EXPECT_EQ(sampler.Sample(kLogits.data(), 5).token, 1);
  const std::vector<float> tied = {0.f, 3.f, 1.f, 3.f, 3.f};
  EXPECT_EQ(sampler.Sample(tied.data(), 5).token, 1);
  const std::vector<float> one = {-7.f};
  EXPECT_EQ(sampler.Sample(one.data(), 1).token, 0);
  // Greedy ignores top-k/top-p.
  Sampler truncated(Params(0, 2, 0.1f));
  EXPECT_EQ(truncated.Sample(tied.data(), 5).token, 1);
}

TEST(Sampler, SameSeedSameSequenceDifferentSeedsDiffer) {
  const std::vector<float> flat(50, 0.f);
  Sampler a(Params(1, 0, 1, 42)), b(Params(1, 0, 1, 42)), c(Params(1, 0, 1, 43));
  const std::vector<int32_t> sa = Draw(a, flat, 64);
  EXPECT_EQ(sa, Draw(b, flat, 64));
  EXPECT_NE(sa, Draw(c, flat, 64));
  // The truncated path is deterministic per seed too.
  Sampler d(Params(0.7f, 20, 0.9f, 7)), e(Params(0.7f, 20, 0.9f, 7));
  EXPECT_EQ(Draw(d, flat, 64), Draw(e, flat, 64));
}

TEST(Sampler, TopKOneIsGreedy) {
  const std::vector<float> tied = {0.f, 3.f, 1.f, 3.f, 3.f};
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Sampler sampler(Params(1.5f, 1, 1, seed));
    EXPECT_EQ(sampler.Sample(kLogits.data(), 5).token, 1);
    EXPECT_EQ(sampler.Sample(tied.data(), 5).token, 1);
  }
}

TEST(Sampler, FrequenciesMatchSoftmax) {
  constexpr int kDraws = 20000;
  // Standard error of a frequency is ≤ 0.5/sqrt(n) ≈ 0.0035; allow ~4 sigma.
  constexpr double kTol = 0.015;
  Sampler sampler(Params(1, 0, 1, 1234));
  const std::vector<double> freq = Frequencies(sampler, kLogits, kDraws);
  const std::vector<double> p = Softmax(kLogits);
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(freq[i], p[i], kTol) << i;

  // Temperature 2 flattens the distribution as softmax(z / 2).
  Sampler hot(Params(2, 0, 1, 99));
  const std::vector<double> hot_freq = Frequencies(hot, kLogits, kDraws);
  const std::vector<double> hot_p = Softmax(kLogits, 2);
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(hot_freq[i], hot_p[i], kTol) << i;
}

TEST(Sampler, TopKRenormalisesOverTheKBest) {
  constexpr int kDraws = 20000;
  Sampler sampler(Params(1, 2, 1, 5));
  const std::vector<double> freq = Frequencies(sampler, kLogits, kDraws);
  // Best two: ids 1 (2.0) and 4 (1.5).
  const double p1 = 1 / (1 + std::exp(-0.5));
  EXPECT_NEAR(freq[1], p1, 0.015);
  EXPECT_NEAR(freq[4], 1 - p1, 0.015);
  EXPECT_EQ(freq[0] + freq[2] + freq[3], 0);
}

TEST(Sampler, TopPRestrictsSupport) {
  // softmax(kLogits) sorted: id1 .4450, id4 .2699, id0 .1637, id2 .0993,
  // id3 .0222; cumulative .4450, .7149, .8786, .9778, 1.
  const std::vector<double> p = Softmax(kLogits);
  struct Case {
    float top_p;
    std::set<int32_t> support;
  };
  for (const Case& c :
       {Case{0.3f, {1}}, Case{0.44f, {1}}, Case{0.6f, {1, 4}}, Case{0.7f, {1, 4}},
        Case{0.8f, {1, 4, 0}}, Case{0.9f, {1, 4, 0, 2}}, Case{0.99f, {1, 4, 0, 2, 3}}}) {
    Sampler sampler(Params(1, 0, c.top_p, 11));
    std::set<int32_t> seen;
    for (int32_t t : Draw(sampler, kLogits, 4000)) seen.insert(t);
    EXPECT_EQ(seen, c.support) << "top_p " << c.top_p;
  }
  // Within the nucleus the draws follow the renormalised probabilities.
  Sampler sampler(Params(1, 0, 0.6f, 3));
  const std::vector<double> freq = Frequencies(sampler, kLogits, 20000);
  EXPECT_NEAR(freq[1], p[1] / (p[1] + p[4]), 0.015);
  EXPECT_NEAR(freq[4], p[4] / (p[1] + p[4]), 0.015);
}

TEST(Sampler, TopKThenTopP) {
  // top_k = 3 keeps ids 1, 4, 0, renormalised to .506, .307, .186: top_p 0.8
  // then keeps ids 1 and 4 (.814), where top_p alone would keep id 0 too.
  Sampler sampler(Params(1, 3, 0.8f, 8));
  std::set<int32_t> seen;
  for (int32_t t : Draw(sampler, kLogits, 4000)) seen.insert(t);
  EXPECT_EQ(seen, (std::set<int32_t>{1, 4}));
}

TEST(Sampler, TopPOverALargeVocabularyKeepsTheNucleus) {
  // 100k tokens, 300 of them far more likely: the lazily sorted nucleus must
  // grow past its first chunk and still exclude the tail.
  std::vector<float> logits(100000, 0.f);
  for (int i = 0; i < 300; ++i) logits[i * 333] = 20.f;
  Sampler sampler(Params(1, 0, 0.5f, 17));
  std::set<int32_t> seen;
  for (int32_t t : Draw(sampler, logits, 500)) seen.insert(t);
  for (int32_t t : seen) EXPECT_EQ(t % 333, 0) << t;
  EXPECT_GT(seen.size(), 100u);
  EXPECT_LE(seen.size(), 151u);  // half of the 300 equally likely heads (+1 for rounding)
}

TEST(Sampler, LogprobsAreTheModelsLogSoftmax) {
  const std::vector<double> p = Softmax(kLogits);
  // Sampled with temperature and top-k, but reported at temperature 1.
  Sampler sampler(Params(0.5f, 2, 1, 3, 3));
  for (int i = 0; i < 20; ++i) {
    const SampledToken tok = sampler.Sample(kLogits.data(), 5);
    EXPECT_NEAR(tok.logprob, std::log(p[tok.token]), 1e-5);
    ASSERT_EQ(tok.top_logprobs.size(), 3u);
    EXPECT_EQ(tok.top_logprobs[0].first, 1);
    EXPECT_EQ(tok.top_logprobs[1].first, 4);
    EXPECT_EQ(tok.top_logprobs[2].first, 0);
    for (const auto& [id, lp] : tok.top_logprobs) EXPECT_NEAR(lp, std::log(p[id]), 1e-5);
  }
  Sampler none(Params(0));
  EXPECT_TRUE(none.Sample(kLogits.data(), 5).top_logprobs.empty());
}

TEST(Sampler, TopLogprobsBreakTiesByLowerIdAndClampToVocab) {
  const std::vector<float> tied = {1.f, 3.f, 3.f, 0.f, 3.f};
  Sampler sampler(Params(0, 0, 1, 0, 20));
  const SampledToken tok = sampler.Sample(tied.data(), 5);
  ASSERT_EQ(tok.top_logprobs.size(), 5u);
  const std::vector<int32_t> ids = {tok.top_logprobs[0].first, tok.top_logprobs[1].first,
                                    tok.top_logprobs[2].first, tok.top_logprobs[3].first,
                                    tok.top_logprobs[4].first};
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 2, 4, 0, 3}));
}

TEST(Sampler, ValidationErrorsNameTheField) {
  EXPECT_TRUE(ValidateSamplingParams(SamplingParams{}).ok());
  EXPECT_TRUE(ValidateSamplingParams(Params(0.7f, 50, 0.95f, 1, 20)).ok());
  struct Case {
    SamplingParams params;
    const char* field;
  };
  for (const Case& c : {Case{Params(-0.1f), "temperature"}, Case{Params(NAN), "temperature"},
                        Case{Params(INFINITY), "temperature"}, Case{Params(1, -1), "top_k"},
                        Case{Params(1, 0, 0), "top_p"}, Case{Params(1, 0, 1.01f), "top_p"},
                        Case{Params(1, 0, NAN), "top_p"}, Case{Params(1, 0, 1, 0, -1), "logprobs"},
                        Case{Params(1, 0, 1, 0, 21), "logprobs"}}) {
    const absl::Status status = ValidateSamplingParams(c.params);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(status.message(), HasSubstr(c.field));
  }
}

}  // namespace
}  // namespace loopserve

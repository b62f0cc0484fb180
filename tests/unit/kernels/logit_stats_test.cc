// Exit statistics against double-precision formulas, ties, KL and cosine.
#include "kernels/cpu/logit_stats.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace loopserve {
namespace {

using kernel_test::RandomFloats;

std::vector<double> SoftmaxDouble(const std::vector<float>& l) {
  const double mx = *std::max_element(l.begin(), l.end());
  std::vector<double> p(l.size());
  double z = 0;
  for (size_t i = 0; i < l.size(); ++i) z += (p[i] = std::exp(l[i] - mx));
  for (double& v : p) v /= z;
  return p;
}

TEST(LogitStatsTest, MatchesDoubleFormulas) {
  std::mt19937 rng(5);
  for (float spread : {0.1f, 3.0f, 40.0f}) {
    std::vector<float> l = RandomFloats(rng, 5003, -spread, spread);
    l[17] += spread;  // a clear winner
    const LogitStats st = ComputeLogitStats(l.data(), static_cast<int64_t>(l.size()));
    const std::vector<double> p = SoftmaxDouble(l);
    std::vector<double> sorted = p;
    std::sort(sorted.rbegin(), sorted.rend());
    double entropy = 0, z = 0;
    const double mx = *std::max_element(l.begin(), l.end());
    for (size_t i = 0; i < p.size(); ++i) {
      if (p[i] > 0) entropy -= p[i] * std::log(p[i]);
      z += std::exp(l[i] - mx);
    }
    EXPECT_EQ(st.top1, std::max_element(p.begin(), p.end()) - p.begin());
    // expf in the exp pass: ~1e-7 relative per term.
    EXPECT_NEAR(st.max_prob, sorted[0], 1e-6 * sorted[0]);
    EXPECT_NEAR(st.margin, sorted[0] - sorted[1], 1e-6);
    EXPECT_NEAR(st.entropy, entropy, 1e-5 * std::max(1.0, entropy));
    EXPECT_NEAR(st.log_sum_exp, mx + std::log(z), 1e-6 * std::fabs(mx + std::log(z)) + 1e-6);
  }
}

TEST(LogitStatsTest, TiesGoToLowerIndexWithZeroMargin) {
  const std::vector<float> l = {1.0f, 3.0f, -2.0f, 3.0f, 0.5f};
  const LogitStats st = ComputeLogitStats(l.data(), 5);
  EXPECT_EQ(st.top1, 1);
  EXPECT_EQ(st.margin, 0.0f);
  const std::vector<float> uniform(8, 0.25f);
  const LogitStats u = ComputeLogitStats(uniform.data(), 8);
  EXPECT_EQ(u.top1, 0);
  EXPECT_NEAR(u.max_prob, 0.125, 1e-7);
  EXPECT_NEAR(u.entropy, std::log(8.0), 1e-6);
}

// Long rows take the vectorised passes: ties inside a vector, across
// vectors and in the scalar tail.
TEST(LogitStatsTest, TiesAndTailInLongRows) {
  std::mt19937 rng(11);
  std::vector<float> l = RandomFloats(rng, 100, -1, 1);
  l[37] = l[80] = 5.0f;
  LogitStats st = ComputeLogitStats(l.data(), 100);
  EXPECT_EQ(st.top1, 37);
  EXPECT_EQ(st.margin, 0.0f);
  l[98] = 6.0f;  // unique max in the tail (96..99)
  st = ComputeLogitStats(l.data(), 100);
  EXPECT_EQ(st.top1, 98);
  const std::vector<double> p = SoftmaxDouble(l);
  EXPECT_NEAR(st.margin, p[98] - p[37], 1e-6);
  l[98] = 5.0f;  // three-way tie, first one wins
  EXPECT_EQ(ComputeLogitStats(l.data(), 100).top1, 37);
}

TEST(LogitStatsTest, HandlesHugeLogitsAndSingleEntry) {
  const std::vector<float> l = {1e30f, 0.0f, -1e30f};
  const LogitStats st = ComputeLogitStats(l.data(), 3);
  EXPECT_EQ(st.top1, 0);
  EXPECT_EQ(st.max_prob, 1.0f);
  EXPECT_EQ(st.entropy, 0.0f);
  const float one = 2.0f;
  const LogitStats s1 = ComputeLogitStats(&one, 1);
  EXPECT_EQ(s1.max_prob, 1.0f);
  EXPECT_EQ(s1.margin, 1.0f);
  EXPECT_DOUBLE_EQ(s1.log_sum_exp, 2.0);
}

TEST(LogitStatsTest, KlDivergence) {
  std::mt19937 rng(6);
  const std::vector<float> p = RandomFloats(rng, 1000, -4, 4), q = RandomFloats(rng, 1000, -4, 4);
  const double p_lse = ComputeLogitStats(p.data(), 1000).log_sum_exp;
  const double q_lse = ComputeLogitStats(q.data(), 1000).log_sum_exp;
  EXPECT_EQ(KlDivergence(p.data(), p_lse, p.data(), p_lse, 1000), 0.0);
  const std::vector<double> pp = SoftmaxDouble(p), qq = SoftmaxDouble(q);
  double kl = 0;
  for (size_t i = 0; i < pp.size(); ++i) kl += pp[i] * std::log(pp[i] / qq[i]);
  EXPECT_NEAR(KlDivergence(p.data(), p_lse, q.data(), q_lse, 1000), kl, 1e-6 * kl);
  EXPECT_GT(KlDivergence(p.data(), p_lse, q.data(), q_lse, 1000), 0.0);
}

TEST(LogitStatsTest, CosineSimilarity) {
  const std::vector<float> a = {1, 2, 3}, b = {2, 4, 6}, c = {-1, -2, -3}, z = {0, 0, 0};
  const std::vector<float> o = {3, 0, -1};
  EXPECT_NEAR(CosineSimilarity(a.data(), b.data(), 3), 1.0, 1e-15);
  EXPECT_NEAR(CosineSimilarity(a.data(), c.data(), 3), -1.0, 1e-15);
  EXPECT_EQ(CosineSimilarity(a.data(), o.data(), 3), 0.0);
  EXPECT_EQ(CosineSimilarity(a.data(), z.data(), 3), 0.0);
}

}  // namespace
}  // namespace loopserve

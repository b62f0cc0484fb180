// Router top-k (scores, ties, weights) and the per-expert grouping.
#include "kernels/cpu/moe_routing.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace loopserve {
namespace {

using kernel_test::RandomFloats;

TEST(MoeRoutingTest, SoftmaxTopKRenormalised) {
  const float logits[] = {0.1f, 2.0f, -1.0f, 1.5f, 2.0f, 0.0f};
  int32_t ids[3];
  float w[3];
  RouteTopK(logits, 1, 6, 3, RouterScoreKind::kSoftmax, true, 1.0f, ids, w);
  // 2.0 at experts 1 and 4 tie: the lower index comes first.
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 4);
  EXPECT_EQ(ids[2], 3);
  const double e2 = std::exp(2.0), e15 = std::exp(1.5);
  EXPECT_NEAR(w[0], e2 / (2 * e2 + e15), 1e-6);
  EXPECT_NEAR(w[1], e2 / (2 * e2 + e15), 1e-6);
  EXPECT_NEAR(w[2], e15 / (2 * e2 + e15), 1e-6);
}

TEST(MoeRoutingTest, AllEqualLogitsPickLowestIndices) {
  const std::vector<float> logits(8, 0.3f);
  int32_t ids[4];
  float w[4];
  RouteTopK(logits.data(), 1, 8, 4, RouterScoreKind::kSoftmax, false, 1.0f, ids, w);
  for (int j = 0; j < 4; ++j) {
    EXPECT_EQ(ids[j], j);
    EXPECT_NEAR(w[j], 0.125f, 1e-7);  // raw softmax, not renormalised
  }
}

TEST(MoeRoutingTest, SigmoidWithoutRenormIsScaled) {
  std::mt19937 rng(8);
  const int64_t n = 5;
  const int experts = 16, k = 4;
  const std::vector<float> logits = RandomFloats(rng, n * experts, -3, 3);
  std::vector<int32_t> ids(n * k);
  std::vector<float> w(n * k);
  RouteTopK(logits.data(), n, experts, k, RouterScoreKind::kSigmoid, false, 2.5f, ids.data(),
            w.data());
  for (int64_t t = 0; t < n; ++t) {
    std::vector<int> order(experts);
    for (int e = 0; e < experts; ++e) order[e] = e;
    const float* l = logits.data() + t * experts;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
    for (int j = 0; j < k; ++j) {
      EXPECT_EQ(ids[t * k + j], order[j]);
      const double s = 1.0 / (1.0 + std::exp(-double{l[order[j]]}));
      EXPECT_NEAR(w[t * k + j], 2.5 * s, 1e-6);
    }
  }
}

TEST(MoeRoutingTest, GroupByExpertIsStableCountingSort) {
  std::mt19937 rng(10);
  const int64_t n = 37;
  const int experts = 9, k = 3;
  std::vector<int32_t> ids(n * k);
  for (int64_t t = 0; t < n; ++t) {
    std::vector<int32_t> e(experts);
    for (int i = 0; i < experts; ++i) e[i] = i;
    std::shuffle(e.begin(), e.end(), rng);
    std::copy_n(e.begin(), k, ids.begin() + t * k);
  }
  const ExpertGroups g = GroupByExpert(ids.data(), n, k, experts);
  ASSERT_EQ(g.offsets.size(), static_cast<size_t>(experts + 1));
  EXPECT_EQ(g.offsets.front(), 0);
  EXPECT_EQ(g.offsets.back(), n * k);
  for (int e = 0; e < experts; ++e) {
    std::vector<int32_t> expected_tokens;
    for (int64_t t = 0; t < n; ++t) {
      for (int j = 0; j < k; ++j) {
        if (ids[t * k + j] == e) expected_tokens.push_back(static_cast<int32_t>(t));
      }
    }
    const std::vector<int32_t> got(g.token.begin() + g.offsets[e],
                                   g.token.begin() + g.offsets[e + 1]);
    EXPECT_EQ(got, expected_tokens) << "expert " << e;
    for (int32_t r = g.offsets[e]; r < g.offsets[e + 1]; ++r) {
      EXPECT_EQ(ids[g.token[r] * k + g.slot[r]], e);
    }
  }
  const ExpertGroups empty = GroupByExpert(ids.data(), 0, k, experts);
  EXPECT_EQ(empty.offsets, std::vector<int32_t>(experts + 1, 0));
}

}  // namespace
}  // namespace loopserve

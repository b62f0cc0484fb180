// The per-element math the CUDA kernels run (kernels/common/scalar_math.h),
// checked on the CPU against the CPU kernels: the GPU computes these very
// functions, so the CPU engine's golden tests vouch for them too.
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/common/scalar_math.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/logit_stats.h"
#include "kernels/cpu/moe_routing.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace loopserve {
namespace {

using kernel_test::RandomFloats;

TEST(SharedScalarMathTest, RmsInvScaleMatchesCpuRmsNorm) {
  std::mt19937 rng(7);
  const int64_t dim = 96;
  const std::vector<float> x = RandomFloats(rng, dim, -3, 3);
  const std::vector<float> w = RandomFloats(rng, dim);
  std::vector<float> cpu(dim);
  RmsNorm(x.data(), 1, dim, VectorView{DType::kF32, dim, w.data()}, 1e-6f, cpu.data());
  double ss = 0;
  for (float v : x) ss += static_cast<double>(v) * v;
  const float inv = RmsInvScale(ss, dim, 1e-6f);
  for (int64_t k = 0; k < dim; ++k) EXPECT_EQ(cpu[k], x[k] * inv * w[k]) << k;
}

TEST(SharedScalarMathTest, SiluMulAndGatedResidualMatchCpu) {
  std::mt19937 rng(8);
  const int64_t n = 64;
  const std::vector<float> g = RandomFloats(rng, n, -6, 6), u = RandomFloats(rng, n);
  std::vector<float> cpu(n);
  SiluMul(g.data(), u.data(), 1, n, cpu.data());
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(cpu[i], SiluMul(g[i], u[i]));
  EXPECT_FLOAT_EQ(SiluMul(0.0f, 5.0f), 0.0f);

  std::vector<float> acc = RandomFloats(rng, n), gain = RandomFloats(rng, n);
  std::vector<float> expected(n);
  for (int64_t i = 0; i < n; ++i) expected[i] = GatedResidual(acc[i], u[i], gain[i]);
  ResidualAdd(acc.data(), u.data(), 1, n, gain.data(), n);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(acc[i], expected[i]);
  EXPECT_FLOAT_EQ(GatedResidual(1.0f, 2.0f, 0.0f), 3.0f);
}

// The device router (scores, top-k, weights) against RouteTopK on random
// rows, with ties forced in some rows.
TEST(SharedScalarMathTest, RouterMatchesCpuRouteTopK) {
  std::mt19937 rng(9);
  for (bool softmax : {true, false}) {
    for (bool norm : {true, false}) {
      const int num_experts = 8, k = 3;
      for (int row = 0; row < 50; ++row) {
        std::vector<float> logits = RandomFloats(rng, num_experts, -2, 2);
        if (row % 5 == 0) logits[6] = logits[2];  // a tie: index 2 must win
        int32_t cpu_ids[k];
        float cpu_w[k];
        RouteTopK(logits.data(), 1, num_experts, k,
                  softmax ? RouterScoreKind::kSoftmax : RouterScoreKind::kSigmoid, norm, 1.5f,
                  cpu_ids, cpu_w);
        std::vector<float> s = logits;
        RouterScoresInPlace(s.data(), num_experts, softmax);
        int32_t ids[k];
        float w[k];
        SelectTopK(s.data(), num_experts, k, ids);
        RouterWeights(s.data(), ids, k, norm, 1.5f, w);
        for (int j = 0; j < k; ++j) {
          EXPECT_EQ(ids[j], cpu_ids[j]) << "row " << row << " slot " << j;
          EXPECT_FLOAT_EQ(w[j], cpu_w[j]) << "row " << row << " slot " << j;
        }
      }
    }
  }
}

TEST(SharedScalarMathTest, SelectTopKTiesGoToLowerIndex) {
  const float s[] = {0.5f, 0.9f, 0.9f, 0.1f, 0.9f};
  int32_t ids[4];
  SelectTopK(s, 5, 4, ids);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 2);
  EXPECT_EQ(ids[2], 4);
  EXPECT_EQ(ids[3], 0);
}

// Exit statistics assembled from the reductions the device kernel makes
// (max, runner-up, Σexp, Σexp·shift) against ComputeLogitStats.
TEST(SharedScalarMathTest, ExitStatsFromSumsMatchCpuLogitStats) {
  std::mt19937 rng(10);
  for (int vocab : {1, 2, 7, 1000}) {
    std::vector<float> z = RandomFloats(rng, vocab, -8, 8);
    if (vocab > 2) z[vocab - 1] = z[0];  // tie possible at the max
    const LogitStats cpu = ComputeLogitStats(z.data(), vocab);
    int32_t top = 0;
    float l1 = z[0], l2 = -INFINITY;
    for (int v = 1; v < vocab; ++v) {
      if (z[v] > l1) {
        l2 = l1;
        l1 = z[v];
        top = v;
      } else if (z[v] > l2) {
        l2 = z[v];
      }
    }
    double sum = 0, weighted = 0;
    for (int v = 0; v < vocab; ++v) {
      const float shifted = z[v] - l1;
      const double e = std::exp(shifted);
      sum += e;
      weighted += e * shifted;
    }
    const RowExitStats st = ExitStatsFromSums(top, l1, l2, sum, weighted, vocab > 1);
    EXPECT_EQ(st.top1, cpu.top1) << vocab;
    EXPECT_NEAR(st.max_prob, cpu.max_prob, 1e-6) << vocab;
    EXPECT_NEAR(st.margin, cpu.margin, 1e-6) << vocab;
    EXPECT_NEAR(st.entropy, cpu.entropy, 1e-5) << vocab;
    // The CPU kernel may use a vectorised exp (<= 2 ulp): float-level agreement.
    EXPECT_NEAR(st.log_sum_exp, cpu.log_sum_exp, 1e-6 * std::max(1.0, std::abs(cpu.log_sum_exp)));
  }
}

TEST(SharedScalarMathTest, KlTermAndCosineMatchCpu) {
  std::mt19937 rng(11);
  const int vocab = 300;
  const std::vector<float> p = RandomFloats(rng, vocab, -4, 4), q = RandomFloats(rng, vocab, -4, 4);
  const double p_lse = ComputeLogitStats(p.data(), vocab).log_sum_exp;
  const double q_lse = ComputeLogitStats(q.data(), vocab).log_sum_exp;
  double kl = 0;
  for (int v = 0; v < vocab; ++v) kl += KlTerm(p[v], p_lse, q[v], q_lse);
  const double cpu_kl = KlDivergence(p.data(), p_lse, q.data(), q_lse, vocab);
  // Float-level agreement: the CPU kernel is free to vectorise its exp.
  EXPECT_NEAR(std::max(0.0, kl), cpu_kl, 1e-6 * std::max(1.0, cpu_kl));
  EXPECT_GT(kl, 0.0);

  double ab = 0, aa = 0, bb = 0;
  for (int v = 0; v < vocab; ++v) {
    ab += static_cast<double>(p[v]) * q[v];
    aa += static_cast<double>(p[v]) * p[v];
    bb += static_cast<double>(q[v]) * q[v];
  }
  EXPECT_NEAR(CosineFromDots(ab, aa, bb), CosineSimilarity(p.data(), q.data(), vocab), 1e-9);
  EXPECT_EQ(CosineFromDots(1.0, 0.0, 1.0), 0.0);
}

}  // namespace
}  // namespace loopserve

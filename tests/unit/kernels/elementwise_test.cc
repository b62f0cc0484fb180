// Row-wise kernels against straightforward scalar formulas in double.
#include "kernels/cpu/elementwise.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/common/scalar_math.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace loopserve {
namespace {

using kernel_test::MakeRandomMatrix;
using kernel_test::RandomFloats;

TEST(ElementwiseTest, EmbeddingLookupWidensRows) {
  std::mt19937 rng(1);
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    auto table = MakeRandomMatrix(rng, dtype, 11, 7);
    const int32_t ids[] = {3, 0, 10, 3};
    std::vector<float> out(4 * 7);
    EmbeddingLookup(table.view, ids, 4, out.data());
    for (int i = 0; i < 4; ++i) {
      for (int c = 0; c < 7; ++c) {
        const uint16_t* h = static_cast<const uint16_t*>(table.view.data);
        const int64_t idx = int64_t{ids[i]} * 7 + c;
        const float expected = dtype == DType::kF32
                                   ? static_cast<const float*>(table.view.data)[idx]
                                   : (dtype == DType::kF16 ? F16ToF32(h[idx]) : Bf16ToF32(h[idx]));
        EXPECT_EQ(out[i * 7 + c], expected);  // widening is exact
      }
    }
  }
}

TEST(ElementwiseTest, RmsNormMatchesDoubleFormula) {
  std::mt19937 rng(2);
  const int64_t n = 5, dim = 1031;
  std::vector<float> x = RandomFloats(rng, n * dim, -3.0f, 3.0f);
  std::vector<uint16_t> w(dim);
  for (auto& v : w) v = F32ToBf16(std::uniform_real_distribution<float>(0.5f, 1.5f)(rng));
  const VectorView wv{DType::kBF16, dim, w.data()};
  const float eps = 1e-6f;
  std::vector<float> out(x.size());
  RmsNorm(x.data(), n, dim, wv, eps, out.data());
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (int64_t k = 0; k < dim; ++k) ss += double{x[i * dim + k]} * x[i * dim + k];
    const double inv = 1.0 / std::sqrt(ss / dim + eps);
    for (int64_t k = 0; k < dim; ++k) {
      const double expected = x[i * dim + k] * inv * Bf16ToF32(w[k]);
      // Two f32 roundings of the product: a few ulps.
      EXPECT_NEAR(out[i * dim + k], expected, 4e-7 * std::fabs(expected) + 1e-12);
    }
  }
  // In place (out aliases x) gives the same result.
  RmsNorm(x.data(), n, dim, wv, eps, x.data());
  EXPECT_EQ(x, out);
}

TEST(ElementwiseTest, RopeMatchesRopePairPerHead) {
  std::mt19937 rng(3);
  const int heads = 3, d = 16;
  const int32_t positions[] = {0, 1, 77, 4095};
  std::vector<float> x = RandomFloats(rng, 4 * heads * d);
  std::vector<float> expected = x;
  for (int i = 0; i < 4; ++i) {
    for (int h = 0; h < heads; ++h) {
      float* head = expected.data() + (i * heads + h) * d;
      for (int j = 0; j < d / 2; ++j)
        RopePair(&head[j], &head[j + d / 2], j, d, positions[i], 1e4f);
    }
  }
  std::vector<float> got = x;
  ApplyRope(got.data(), 4, heads, d, positions, 1e4f);
  for (size_t k = 0; k < got.size(); ++k) EXPECT_FLOAT_EQ(got[k], expected[k]) << k;
  // Position 0 is the identity; every rotation preserves each pair's norm.
  for (int k = 0; k < heads * d; ++k) EXPECT_EQ(got[k], x[k]);
  for (int i = 1; i < 4; ++i) {
    for (int h = 0; h < heads; ++h) {
      for (int j = 0; j < d / 2; ++j) {
        const int64_t a = (i * heads + h) * d + j, b = a + d / 2;
        const double before = std::hypot(double{x[a]}, double{x[b]});
        const double after = std::hypot(double{got[a]}, double{got[b]});
        EXPECT_NEAR(after, before, 1e-6 * before + 1e-7);
      }
    }
  }
}

TEST(ElementwiseTest, SiluMulMatchesFormula) {
  std::mt19937 rng(4);
  std::vector<float> g = RandomFloats(rng, 2 * 37, -8.0f, 8.0f), u = RandomFloats(rng, 2 * 37);
  std::vector<float> out(g.size());
  SiluMul(g.data(), u.data(), 2, 37, out.data());
  for (size_t k = 0; k < g.size(); ++k) {
    const double expected = g[k] / (1.0 + std::exp(-double{g[k]})) * u[k];
    EXPECT_NEAR(out[k], expected, 1e-6 * std::fabs(expected) + 1e-7);
  }
  SiluMul(g.data(), u.data(), 2, 37, g.data());  // out aliases gate
  EXPECT_EQ(g, out);
}

TEST(ElementwiseTest, ModulateAndResidualAddUseRowStride) {
  const int64_t n = 2, dim = 3, ld = 5;  // modulation rows wider than dim
  std::vector<float> x = {1, 2, 3, 4, 5, 6};
  std::vector<float> scale = {0.5f, 0, -1, 9, 9, 1, 2, 3, 9, 9};
  std::vector<float> shift = {1, 1, 1, 9, 9, 0, 0, 0.5f, 9, 9};
  Modulate(x.data(), n, dim, scale.data(), shift.data(), ld);
  const std::vector<float> modulated = {2.5f, 3, 1, 8, 15, 24.5f};
  EXPECT_EQ(x, modulated);

  std::vector<float> acc = {1, 1, 1, 1, 1, 1};
  const std::vector<float> delta = {1, 2, 3, 4, 5, 6};
  ResidualAdd(acc.data(), delta.data(), n, dim, nullptr, 0);
  EXPECT_EQ(acc, (std::vector<float>{2, 3, 4, 5, 6, 7}));
  ResidualAdd(acc.data(), delta.data(), n, dim, scale.data(), ld);  // (1 + g) ⊙ delta
  EXPECT_EQ(acc, (std::vector<float>{3.5f, 5, 4, 13, 21, 31}));
}

}  // namespace
}  // namespace loopserve

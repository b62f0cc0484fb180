// Linear (AVX-512 and AVX2 decode/GEMM tilings and the portable path) against
// LinearReference for every storage dtype, odd shapes and thread counts. Each
// path the CPU supports is forced in turn; unsupported ones are skipped.
#include "kernels/cpu/linear.h"

#include <cmath>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cpu/widen.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace loopserve {
namespace {

using kernel_test::MakeRandomMatrix;
using kernel_test::RandomFloats;

// f32 accumulation error grows like sqrt(K) · eps · Σ|x_k w_k| for random
// signs; 2e-7 · sqrt(K) (≈ 1.7 eps) leaves headroom for the blocked sums. The
// reference widens the same stored weights, so the bound is dtype-free.
double Tolerance(const float* x, const MatrixView& w, int64_t n) {
  double abs_sum = 0;
  for (int64_t k = 0; k < w.cols; ++k) {
    abs_sum += std::fabs(static_cast<double>(x[k]) * WidenAt(w.data, w.dtype, n * w.cols + k));
  }
  return 2e-7 * std::sqrt(static_cast<double>(w.cols)) * abs_sum + 1e-30;
}

enum class Path { kDispatch, kPortable, kAvx2, kAvx512 };

void CheckLinear(DType dtype, int64_t m, int64_t n_out, int64_t k_in, ThreadPool* pool, Path path) {
  std::mt19937 rng(static_cast<uint32_t>(m * 1000003 + n_out * 1009 + k_in));
  auto w = MakeRandomMatrix(rng, dtype, n_out, k_in);
  std::vector<float> x = RandomFloats(rng, m * k_in);
  std::vector<float> y(static_cast<size_t>(m * n_out), -7.0f), ref(y.size());
  switch (path) {
    case Path::kDispatch:
      Linear(x.data(), m, w.view, y.data(), pool);
      break;
    case Path::kPortable:
      LinearPortable(x.data(), m, w.view, y.data(), pool);
      break;
    case Path::kAvx2:
      LinearWithPath(LinearPath::kAvx2, x.data(), m, w.view, y.data(), pool);
      break;
    case Path::kAvx512:
      LinearWithPath(LinearPath::kAvx512, x.data(), m, w.view, y.data(), pool);
      break;
  }
  LinearReference(x.data(), m, w.view, ref.data());
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t n = 0; n < n_out; ++n) {
      const double tol = Tolerance(x.data() + i * k_in, w.view, n);
      ASSERT_NEAR(y[i * n_out + n], ref[i * n_out + n], tol)
          << "path " << static_cast<int>(path) << " dtype " << static_cast<int>(dtype) << " m " << m
          << " N " << n_out << " K " << k_in << " at (" << i << ", " << n << ")";
    }
  }
}

class LinearTest : public ::testing::TestWithParam<std::tuple<DType, int64_t>> {};

// Odd N/K (not multiples of 4/8/16/32), K across several 256-wide blocks,
// N across 128-wide blocks, and narrow W (router / exit gate).
const std::vector<std::pair<int64_t, int64_t>>& Shapes() {
  static const auto* shapes = new std::vector<std::pair<int64_t, int64_t>>{
      {1, 1}, {7, 13}, {33, 70}, {16, 256}, {129, 257}, {300, 1030}, {3, 520}, {1, 64}, {45, 31}};
  return *shapes;
}

void CheckPathOverShapes(DType dtype, int64_t m, Path path) {
  ThreadPool pool2(2), pool3(3);
  for (const auto& [n_out, k_in] : Shapes()) {
    CheckLinear(dtype, m, n_out, k_in, nullptr, path);
    CheckLinear(dtype, m, n_out, k_in, &pool2, path);
    CheckLinear(dtype, m, n_out, k_in, &pool3, path);
  }
}

TEST_P(LinearTest, MatchesReferenceOverShapes) {
  const auto [dtype, m] = GetParam();
  CheckPathOverShapes(dtype, m, Path::kDispatch);
}

TEST_P(LinearTest, Avx2PathMatchesReference) {
  if (!LinearPathSupported(LinearPath::kAvx2)) GTEST_SKIP() << "no AVX2 on this CPU";
  const auto [dtype, m] = GetParam();
  CheckPathOverShapes(dtype, m, Path::kAvx2);
}

TEST_P(LinearTest, Avx512PathMatchesReference) {
  if (!LinearPathSupported(LinearPath::kAvx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  const auto [dtype, m] = GetParam();
  CheckPathOverShapes(dtype, m, Path::kAvx512);
}

TEST_P(LinearTest, PortablePathMatchesReference) {
  const auto [dtype, m] = GetParam();
  ThreadPool pool(2);
  for (const auto& [n_out, k_in] : std::vector<std::pair<int64_t, int64_t>>{{7, 13}, {129, 257}}) {
    CheckLinear(dtype, m, n_out, k_in, nullptr, Path::kPortable);
    CheckLinear(dtype, m, n_out, k_in, &pool, Path::kPortable);
  }
}

std::string ParamName(const ::testing::TestParamInfo<std::tuple<DType, int64_t>>& info) {
  const char* names[] = {"F32", "F16", "BF16"};
  return std::string(names[static_cast<int>(std::get<0>(info.param))]) + "_m" +
         std::to_string(std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, LinearTest,
                         ::testing::Combine(::testing::Values(DType::kF32, DType::kF16,
                                                              DType::kBF16),
                                            ::testing::Values(1, 2, 3, 4, 5, 8, 17, 64, 130)),
                         ParamName);

// LinearFused must give each target exactly what Linear gives it (same tiles,
// same sums), for decode-sized m (one fused region) and larger m (in turn).
TEST(LinearTest, FusedIsBitIdenticalToSeparateLinears) {
  std::mt19937 rng(11);
  const int64_t k_in = 70;
  std::vector<kernel_test::RandomMatrix> ws;
  for (int64_t n_out : {13, 4, 33}) ws.push_back(MakeRandomMatrix(rng, DType::kBF16, n_out, k_in));
  ThreadPool pool2(2), pool3(3);
  for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
    for (int64_t m : {1, 3, 8, 32, 40}) {
      std::vector<float> x = RandomFloats(rng, m * k_in);
      std::vector<std::vector<float>> fused, separate;
      std::vector<LinearTarget> targets;
      for (const auto& w : ws) {
        fused.emplace_back(static_cast<size_t>(m * w.view.rows), -7.0f);
        separate.emplace_back(static_cast<size_t>(m * w.view.rows), -5.0f);
      }
      for (size_t j = 0; j < ws.size(); ++j) targets.push_back({ws[j].view, fused[j].data()});
      LinearFused(x.data(), m, targets, pool);
      for (size_t j = 0; j < ws.size(); ++j) {
        Linear(x.data(), m, ws[j].view, separate[j].data(), pool);
        EXPECT_EQ(fused[j], separate[j]) << "m " << m << " target " << j;
      }
    }
  }
}

TEST(LinearTest, BestPathIsSupported) {
  EXPECT_TRUE(LinearPathSupported(LinearBestPath()));
  EXPECT_TRUE(LinearPathSupported(LinearPath::kPortable));
  EXPECT_EQ(LinearUsesAvx2(), LinearPathSupported(LinearPath::kAvx2));
}

TEST(LinearTest, ZeroInnerDimensionGivesZeros) {
  std::vector<float> y(6, 3.0f);
  const float dummy = 0;
  MatrixView w{DType::kF32, 3, 0, &dummy};
  Linear(&dummy, 2, w, y.data(), nullptr);
  for (float v : y) EXPECT_EQ(v, 0.0f);
}

TEST(LinearTest, ReferenceIsExactOnSmallIntegers) {
  // 2x3 · [[1,2,3],[4,5,6]]ᵀ computed by hand.
  const float x[] = {1, 0, -1, 2, 1, 1};
  const float wd[] = {1, 2, 3, 4, 5, 6};
  MatrixView w{DType::kF32, 2, 3, wd};
  float y[4], ref[4];
  LinearReference(x, 2, w, ref);
  Linear(x, 2, w, y, nullptr);
  const float expected[] = {-2, -2, 7, 19};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(ref[i], expected[i]);
    EXPECT_EQ(y[i], expected[i]);
  }
}

}  // namespace
}  // namespace loopserve

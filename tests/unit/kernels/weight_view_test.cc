// Tests for kernels/common/weight_view: At() widens each storage dtype
// exactly (bit patterns checked independently of any converter).
#include "kernels/common/weight_view.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "gtest/gtest.h"
#include "tests/unit/testing/safetensors_writer.h"

namespace loopserve {
namespace {

TEST(WeightViewTest, DTypeNamesAndSizes) {
  EXPECT_STREQ(DTypeName(DType::kF32), "F32");
  EXPECT_STREQ(DTypeName(DType::kF16), "F16");
  EXPECT_STREQ(DTypeName(DType::kBF16), "BF16");
  EXPECT_EQ(DTypeSize(DType::kF32), 4);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2);
}

TEST(WeightViewTest, F16BitPatternsWiden) {
  const uint16_t bits[] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x0400, 0x3555, 0x8000, 0x7C00, 0xFC00};
  const float expected[] = {1.0f,
                            -2.0f,
                            65504.0f,
                            std::ldexp(1.0f, -24),
                            std::ldexp(1.0f, -14),
                            0.333251953125f,
                            -0.0f,
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()};
  VectorView v{DType::kF16, 9, bits};
  for (int i = 0; i < 9; ++i) EXPECT_EQ(v.At(i), expected[i]) << i;
  EXPECT_TRUE(std::signbit(v.At(6)));
  const uint16_t nan = 0x7E00;
  EXPECT_TRUE(std::isnan((VectorView{DType::kF16, 1, &nan}.At(0))));
}

TEST(WeightViewTest, Bf16BitPatternsWiden) {
  const uint16_t bits[] = {0x3F80, 0xC040, 0x3EAB, 0x7F80};
  const float expected[] = {1.0f, -3.0f, 0.333984375f, std::numeric_limits<float>::infinity()};
  MatrixView m{DType::kBF16, 2, 2, bits};
  EXPECT_EQ(m.At(0, 0), expected[0]);
  EXPECT_EQ(m.At(0, 1), expected[1]);
  EXPECT_EQ(m.At(1, 0), expected[2]);
  EXPECT_EQ(m.At(1, 1), expected[3]);
}

TEST(WeightViewTest, F32IsRowMajorAndUnalignedReadsWork) {
  alignas(4) unsigned char buf[4 * 6 + 1];
  const float values[6] = {1, 2, 3, 4, 5, 6};
  memcpy(buf + 1, values, sizeof(values));  // deliberately misaligned, as mmap offsets may be
  MatrixView m{DType::kF32, 2, 3, buf + 1};
  EXPECT_EQ(m.At(0, 2), 3.0f);
  EXPECT_EQ(m.At(1, 0), 4.0f);
  EXPECT_EQ(m.At(1, 2), 6.0f);
}

// The test writer's f32 -> f16 rounding (used to build fixtures) is exact
// round-to-nearest-even, including subnormals and overflow.
TEST(WeightViewTest, WriterF16RoundingIsNearestEven) {
  using testutil::F32ToF16;
  EXPECT_EQ(F32ToF16(1.0f), 0x3C00);
  EXPECT_EQ(F32ToF16(-2.0f), 0xC000);
  EXPECT_EQ(F32ToF16(65504.0f), 0x7BFF);
  EXPECT_EQ(F32ToF16(65519.0f), 0x7BFF);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7C00);  // the tie rounds to even = inf
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000);         // tie to even (0)
  EXPECT_EQ(F32ToF16(std::ldexp(3.0f, -25)), 0x0002);         // 1.5 ulp: tie to even (2)
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie, even mantissa stays
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(3.0f, -11)), 0x3C02);  // tie, odd mantissa rounds up
  EXPECT_EQ(F32ToF16(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_EQ(F32ToF16(std::nanf("")) & 0x7E00, 0x7E00);
  for (float x : {0.1f, -0.7f, 3.14159f, 1e-5f, 1234.5f}) {
    EXPECT_NEAR(testutil::RoundTrip(DType::kF16, x), x, std::fabs(x) * 1e-3f + 1e-7f) << x;
    EXPECT_NEAR(testutil::RoundTrip(DType::kBF16, x), x, std::fabs(x) * 8e-3f) << x;
  }
}

}  // namespace
}  // namespace loopserve

// Shared helpers of the CPU kernel tests: seeded random tensors in each
// checkpoint dtype and a tolerance for f32 dot products.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/common/scalar_math.h"
#include "kernels/common/weight_view.h"

namespace loopserve::kernel_test {

inline std::vector<float> RandomFloats(std::mt19937& rng, int64_t n, float lo = -1.0f,
                                       float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// Storage for a random [rows, cols] matrix in `dtype`, values in about
// [-1, 1]; f16 patterns are built from bits (normal halves only).
struct RandomMatrix {
  std::vector<uint8_t> bytes;
  MatrixView view;
};

inline RandomMatrix MakeRandomMatrix(std::mt19937& rng, DType dtype, int64_t rows, int64_t cols) {
  RandomMatrix m;
  const int64_t count = rows * cols;
  m.bytes.resize(static_cast<size_t>(count * DTypeSize(dtype)) + 1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::uniform_int_distribution<int> bits(0, 0xffff);
  for (int64_t i = 0; i < count; ++i) {
    switch (dtype) {
      case DType::kF32:
        reinterpret_cast<float*>(m.bytes.data())[i] = dist(rng);
        break;
      case DType::kBF16:
        reinterpret_cast<uint16_t*>(m.bytes.data())[i] = F32ToBf16(dist(rng));
        break;
      case DType::kF16: {
        // sign | exponent 8..15 (2^-7 .. 1.x) | random mantissa
        const int b = bits(rng);
        const uint16_t exp = static_cast<uint16_t>(8 + (b & 7));
        reinterpret_cast<uint16_t*>(m.bytes.data())[i] =
            static_cast<uint16_t>((b & 0x8000) | (exp << 10) | (bits(rng) & 0x3ff));
        break;
      }
    }
  }
  m.view = MatrixView{dtype, rows, cols, m.bytes.data()};
  return m;
}

}  // namespace loopserve::kernel_test

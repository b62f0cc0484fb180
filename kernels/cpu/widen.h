// Scalar widening of checkpoint storage (f32/f16/bf16) to f32 for the CPU
// kernels' cold paths: norms' weights, embedding rows, tails, references.
#pragma once

#include <cstdint>

#include "kernels/common/scalar_math.h"
#include "kernels/common/weight_view.h"

namespace loopserve {

// data[i] of a tensor stored as `dtype`, widened to f32.
inline float WidenAt(const void* data, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kF32:
      return static_cast<const float*>(data)[i];
    case DType::kF16:
      return F16ToF32(static_cast<const uint16_t*>(data)[i]);
    case DType::kBF16:
      return Bf16ToF32(static_cast<const uint16_t*>(data)[i]);
  }
  return 0.0f;
}

// src[0..n) -> dst[0..n) in f32.
inline void WidenRow(const void* src, DType dtype, int64_t n, float* dst) {
  switch (dtype) {
    case DType::kF32:
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<const float*>(src)[i];
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = F16ToF32(static_cast<const uint16_t*>(src)[i]);
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToF32(static_cast<const uint16_t*>(src)[i]);
      return;
  }
}

}  // namespace loopserve

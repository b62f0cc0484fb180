// Per-element math shared by every backend. Functions here are
// `LOOPSERVE_HD inline` so the CUDA backend compiles the very code the CPU
// tests exercise (DESIGN.md, "CUDA without a GPU at hand").
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define LOOPSERVE_HD __host__ __device__
#else
#define LOOPSERVE_HD
#endif

namespace loopserve {

// bf16 -> f32 is a 16-bit shift; f32 -> bf16 rounds to nearest even.
LOOPSERVE_HD inline float Bf16ToF32(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
}

LOOPSERVE_HD inline uint16_t F32ToBf16(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

// IEEE half -> f32, including subnormals, inf and NaN.
LOOPSERVE_HD inline float F16ToF32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
}

LOOPSERVE_HD inline float Silu(float x) { return x / (1.0f + expf(-x)); }
LOOPSERVE_HD inline float Sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// Rotates the pair (a, b) = (x[i], x[i + d/2]) by the angle whose cosine and
// sine are (c, s): the rotate-half step of RoPE.
LOOPSERVE_HD inline void RotateHalfPair(float* a, float* b, float c, float s) {
  const float x0 = *a, x1 = *b;
  *a = x0 * c - x1 * s;
  *b = x1 * c + x0 * s;
}

// RoPE (rotate-half, as in Llama) for the pair (x[i], x[i + d/2]) at
// position `pos`: inv_freq_i = theta^(-2i/d).
LOOPSERVE_HD inline void RopePair(float* a, float* b, int i, int head_dim, int pos,
                                  float theta) {
  double inv_freq = pow(static_cast<double>(theta), -2.0 * i / head_dim);
  double angle = static_cast<double>(pos) * inv_freq;
  RotateHalfPair(a, b, static_cast<float>(cos(angle)), static_cast<float>(sin(angle)));
}

// IterAdaLN modulation of a normalised activation: x * (1 + scale) + shift.
LOOPSERVE_HD inline float AdaLnModulate(float x, float scale, float shift) {
  return x * (1.0f + scale) + shift;
}

}  // namespace loopserve

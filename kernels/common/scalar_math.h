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

// RMSNorm's inverse scale 1 / sqrt(mean(x²) + eps) from the sum of squares
// (accumulated in double by both backends).
LOOPSERVE_HD inline float RmsInvScale(double sum_sq, int64_t dim, float eps) {
  return static_cast<float>(1.0 / sqrt(sum_sq / static_cast<double>(dim) + eps));
}

// SwiGLU's elementwise step: silu(gate) * up.
LOOPSERVE_HD inline float SiluMul(float gate, float up) { return Silu(gate) * up; }

// A residual update with IterAdaLN's gate: acc + (1 + gain) * delta.
LOOPSERVE_HD inline float GatedResidual(float acc, float delta, float gain) {
  return acc + (1.0f + gain) * delta;
}

// Router scores in place over E logits: softmax (exp in f32 after the max,
// sum in double, as the CPU router) or sigmoid.
LOOPSERVE_HD inline void RouterScoresInPlace(float* s, int num_experts, bool softmax) {
  if (softmax) {
    float mx = s[0];
    for (int e = 1; e < num_experts; ++e) mx = s[e] > mx ? s[e] : mx;
    double sum = 0;
    for (int e = 0; e < num_experts; ++e) {
      s[e] = expf(s[e] - mx);
      sum += s[e];
    }
    for (int e = 0; e < num_experts; ++e) s[e] = static_cast<float>(s[e] / sum);
  } else {
    for (int e = 0; e < num_experts; ++e) s[e] = Sigmoid(s[e]);
  }
}

// Top-k of scores s (E) in descending order, ties to the lower index (the
// strict order of MODEL_SPEC "MoE(x)"); ids (k). O(k*E), for small E.
LOOPSERVE_HD inline void SelectTopK(const float* s, int num_experts, int k, int32_t* ids) {
  for (int j = 0; j < k; ++j) {
    int best = -1;
    for (int e = 0; e < num_experts; ++e) {
      bool taken = false;
      for (int i = 0; i < j; ++i) taken = taken || ids[i] == e;
      if (taken) continue;
      // Strict > keeps the lower index on a tie.
      if (best < 0 || s[e] > s[best]) best = e;
    }
    ids[j] = best;
  }
}

// The k routing weights of the selected scores: renormalised to sum 1 when
// norm_topk_prob, then multiplied by routed_scaling_factor.
LOOPSERVE_HD inline void RouterWeights(const float* s, const int32_t* ids, int k, bool norm_topk,
                                       float scaling, float* weights) {
  double total = 0;
  for (int j = 0; j < k; ++j) total += s[ids[j]];
  const double norm = norm_topk && total > 0 ? 1.0 / total : 1.0;
  for (int j = 0; j < k; ++j) {
    weights[j] = static_cast<float>(static_cast<double>(s[ids[j]]) * norm * scaling);
  }
}

// Exit statistics of a logit row from its reductions: the largest logit l1
// (at index top), the runner-up l2 (== l1 on a tie), z = Σ exp(l - l1) and
// weighted = Σ exp(l - l1) (l - l1). H = log z - weighted / z.
struct RowExitStats {
  int32_t top1;
  float max_prob;
  float margin;
  float entropy;
  double log_sum_exp;
};
LOOPSERVE_HD inline RowExitStats ExitStatsFromSums(int32_t top, float l1, float l2, double z,
                                                   double weighted, bool has_runner_up) {
  RowExitStats st;
  const double log_z = log(z);
  st.top1 = top;
  st.max_prob = static_cast<float>(1.0 / z);
  const double p2 = has_runner_up ? exp(static_cast<double>(l2) - l1) / z : 0.0;
  st.margin = static_cast<float>(1.0 / z - p2);
  const double h = log_z - weighted / z;
  st.entropy = static_cast<float>(h > 0.0 ? h : 0.0);
  st.log_sum_exp = static_cast<double>(l1) + log_z;
  return st;
}

// One vocabulary entry's term of KL(softmax p ‖ softmax q).
LOOPSERVE_HD inline double KlTerm(float p_logit, double p_lse, float q_logit, double q_lse) {
  const double log_p = static_cast<double>(p_logit) - p_lse;
  const double log_q = static_cast<double>(q_logit) - q_lse;
  return exp(log_p) * (log_p - log_q);
}

// cos from the three dot products (0 when either vector is zero).
LOOPSERVE_HD inline double CosineFromDots(double ab, double aa, double bb) {
  if (aa == 0 || bb == 0) return 0.0;
  return ab / (sqrt(aa) * sqrt(bb));
}

}  // namespace loopserve

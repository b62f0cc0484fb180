// Exit statistics over one vocabulary row: max and runner-up in one pass,
// then one exp pass accumulated in double (entropy and log-sum-exp).
#include "kernels/cpu/logit_stats.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/op_profile.h"
#include "kernels/cpu/vec_exp.h"

namespace loopserve {
namespace {

// z += Σ e_v and weighted += Σ e_v (l_v - mx) over v in [begin, vocab), with
// e_v = exp(l_v - mx) in f32 and the sums in double.
void ExpSumsScalar(const float* logits, int64_t begin, int64_t vocab, float mx, double* z,
                   double* weighted) {
  for (int64_t v = begin; v < vocab; ++v) {
    const float shifted = logits[v] - mx;
    const double e = std::exp(shifted);
    *z += e;
    *weighted += e * shifted;
  }
}

// Argmax (first occurrence) and the two largest values; l2 == l1 on a tie.
struct TopTwo {
  int64_t top = 0;
  float l1 = 0;
  float l2 = -std::numeric_limits<float>::infinity();
};

TopTwo TopTwoScalar(const float* logits, int64_t vocab) {
  TopTwo t;
  t.l1 = logits[0];
  for (int64_t v = 1; v < vocab; ++v) {
    const float l = logits[v];
    if (l > t.l1) {
      t.l2 = t.l1;
      t.l1 = l;
      t.top = v;
    } else if (l > t.l2) {
      t.l2 = l;
    }
  }
  return t;
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2"))) float HorizontalMax(__m256 m) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m);
  return *std::max_element(lanes, lanes + 8);
}

// Branch-free passes instead of the scalar compare chain: max, then the
// first index holding it, the count of ties and the largest value below it.
__attribute__((target("avx2"))) TopTwo TopTwoAvx2(const float* logits, int64_t vocab) {
  const int64_t vocab8 = vocab & ~int64_t{7};
  if (vocab8 == 0) return TopTwoScalar(logits, vocab);
  __m256 m = _mm256_loadu_ps(logits);
  for (int64_t v = 8; v < vocab8; v += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(logits + v));
  float l1 = HorizontalMax(m);
  for (int64_t v = vocab8; v < vocab; ++v) l1 = std::max(l1, logits[v]);

  const __m256 vl1 = _mm256_set1_ps(l1);
  const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 below = neg_inf;
  int64_t ties = 0, top = -1;
  for (int64_t v = 0; v < vocab8; v += 8) {
    const __m256 l = _mm256_loadu_ps(logits + v);
    const __m256 eq = _mm256_cmp_ps(l, vl1, _CMP_EQ_OQ);
    below = _mm256_max_ps(below, _mm256_blendv_ps(l, neg_inf, eq));
    const int mask = _mm256_movemask_ps(eq);
    if (mask != 0) {
      if (top < 0) top = v + __builtin_ctz(static_cast<unsigned>(mask));
      ties += __builtin_popcount(static_cast<unsigned>(mask));
    }
  }
  float l2 = HorizontalMax(below);
  for (int64_t v = vocab8; v < vocab; ++v) {
    if (logits[v] == l1) {
      if (top < 0) top = v;
      ++ties;
    } else {
      l2 = std::max(l2, logits[v]);
    }
  }
  if (top < 0) return TopTwoScalar(logits, vocab);  // NaN max: keep the scalar semantics
  TopTwo t;
  t.top = top;
  t.l1 = l1;
  t.l2 = ties >= 2 ? l1 : l2;
  return t;
}

// The exp pass dominates for a 150k vocabulary; 8 lanes of Exp8 make it
// several times cheaper than scalar expf.
__attribute__((target("avx2,fma"))) void ExpSumsAvx2(const float* logits, int64_t vocab, float mx,
                                                     double* z, double* weighted) {
  const int64_t vocab8 = vocab & ~int64_t{7};
  const __m256 vmx = _mm256_set1_ps(mx);
  __m256d z4 = _mm256_setzero_pd(), w4 = _mm256_setzero_pd();
  for (int64_t v = 0; v < vocab8; v += 8) {
    const __m256 shifted = _mm256_sub_ps(_mm256_loadu_ps(logits + v), vmx);
    const __m256 e = internal::Exp8(shifted);
    const __m256d e_lo = _mm256_cvtps_pd(_mm256_castps256_ps128(e));
    const __m256d e_hi = _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1));
    z4 = _mm256_add_pd(z4, _mm256_add_pd(e_lo, e_hi));
    w4 = _mm256_fmadd_pd(e_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(shifted)), w4);
    w4 = _mm256_fmadd_pd(e_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(shifted, 1)), w4);
  }
  alignas(32) double zs[4], ws[4];
  _mm256_store_pd(zs, z4);
  _mm256_store_pd(ws, w4);
  *z = (zs[0] + zs[1]) + (zs[2] + zs[3]);
  *weighted = (ws[0] + ws[1]) + (ws[2] + ws[3]);
  ExpSumsScalar(logits, vocab8, vocab, mx, z, weighted);
}
#endif

TopTwo FindTopTwo(const float* logits, int64_t vocab) {
#if defined(__x86_64__) || defined(__i386__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return TopTwoAvx2(logits, vocab);
#endif
  return TopTwoScalar(logits, vocab);
}

void ExpSums(const float* logits, int64_t vocab, float mx, double* z, double* weighted) {
#if defined(__x86_64__) || defined(__i386__)
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (avx2) return ExpSumsAvx2(logits, vocab, mx, z, weighted);
#endif
  *z = 0;
  *weighted = 0;
  ExpSumsScalar(logits, 0, vocab, mx, z, weighted);
}

}  // namespace

// logits (V) -> stats
LogitStats ComputeLogitStats(const float* logits, int64_t vocab) {
  op_profile::Scope profile("logit_stats");
  LogitStats st;
  if (vocab <= 0) return st;
  // top1 keeps the first maximum; the runner-up may equal it (a tie).
  const TopTwo tt = FindTopTwo(logits, vocab);
  const int64_t top = tt.top;
  const float l1 = tt.l1, l2 = tt.l2;
  // With z = Σ exp(l - l1): p_v = exp(l_v - l1) / z and
  // H = log z - Σ p_v (l_v - l1), so nothing overflows.
  double z = 0, weighted = 0;
  ExpSums(logits, vocab, l1, &z, &weighted);
  const double log_z = std::log(z);
  st.top1 = static_cast<int32_t>(top);
  st.max_prob = static_cast<float>(1.0 / z);
  const double p2 = vocab > 1 ? std::exp(static_cast<double>(l2) - l1) / z : 0.0;
  st.margin = static_cast<float>(1.0 / z - p2);
  st.entropy = static_cast<float>(std::max(0.0, log_z - weighted / z));
  st.log_sum_exp = static_cast<double>(l1) + log_z;
  return st;
}

// p_logits, q_logits (V) -> KL(p ‖ q) in nats
double KlDivergence(const float* p_logits, double p_lse, const float* q_logits, double q_lse,
                    int64_t vocab) {
  op_profile::Scope profile("kl_divergence");
  double kl = 0;
  for (int64_t v = 0; v < vocab; ++v) {
    const double log_p = static_cast<double>(p_logits[v]) - p_lse;
    const double log_q = static_cast<double>(q_logits[v]) - q_lse;
    kl += std::exp(log_p) * (log_p - log_q);
  }
  // KL >= 0; rounding can leave a tiny negative on near-identical inputs.
  return std::max(0.0, kl);
}

// a, b (n) -> cos(a, b)
double CosineSimilarity(const float* a, const float* b, int64_t n) {
  op_profile::Scope profile("cosine");
  double ab = 0, aa = 0, bb = 0;
  for (int64_t i = 0; i < n; ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  if (aa == 0 || bb == 0) return 0.0;
  return ab / (std::sqrt(aa) * std::sqrt(bb));
}

}  // namespace loopserve

// AttendRowBlock: scores of a 16-key tile as 16 lanes, K tile transposed.
//
// Identical to the row path: there, score = HorizontalSum of 8 lane sums
// (lane j = FMA chain over c = j, j+8, ... in order), folded as
// ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)), then times the scale; the
// weighted sum is one FMA chain over positions per output element. Here
// the 8 lane sums of 16 keys are 8 zmm FMA chains over the same c order,
// folded the same way, and the weighted sum keeps one chain per element.
#include "kernels/cpu/attention_row_block.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define LOOPSERVE_AVX512 __attribute__((target("avx512f,avx2,fma")))

namespace loopserve::internal {
namespace {

constexpr int kKeyTile = 16;

// Scores of one query vector (d) against the transposed tile kt (d, 16):
// 8 chains over c mod 8, folded like the row path's HorizontalSum.
LOOPSERVE_AVX512 __m512 TileScores(const float* qv, const float* kt, int d) {
  __m512 l[8];
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) l[j] = _mm512_setzero_ps();
  for (int c = 0; c < d; c += 8) {
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      l[j] = _mm512_fmadd_ps(_mm512_set1_ps(qv[c + j]), _mm512_loadu_ps(kt + (c + j) * kKeyTile),
                             l[j]);
    }
  }
  const __m512 a = _mm512_add_ps(_mm512_add_ps(l[0], l[4]), _mm512_add_ps(l[2], l[6]));
  const __m512 b = _mm512_add_ps(_mm512_add_ps(l[1], l[5]), _mm512_add_ps(l[3], l[7]));
  return _mm512_add_ps(a, b);
}

// out (d) += nothing: out = Σ_{p < len} w[p] · rows[p], 16 lanes at a time,
// for `nv` query vectors at once (each its own w row and len).
template <int NV>
LOOPSERVE_AVX512 void WeightedSums(const float* const* rows, const float* w, int64_t ldw,
                                   const int64_t* len, int d, float* const* out) {
  int64_t max_len = 0;
  for (int v = 0; v < NV; ++v) max_len = std::max(max_len, len[v]);
  for (int c = 0; c < d; c += 16) {
    __m512 acc[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[v] = _mm512_setzero_ps();
    for (int64_t p = 0; p < max_len; ++p) {
      const __m512 r = _mm512_loadu_ps(rows[p] + c);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        // Weights past a row's own length are zero (set by the caller), so
        // the chain of a shorter row is unchanged by them.
        acc[v] = _mm512_fmadd_ps(_mm512_set1_ps(w[v * ldw + p]), r, acc[v]);
      }
    }
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(out[v] + c, acc[v]);
  }
}

}  // namespace

bool AttendRowBlockSupported(int head_dim) {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
                          __builtin_cpu_supports("fma");
  return has && head_dim > 0 && head_dim % 16 == 0;
}

LOOPSERVE_AVX512 void AttendRowBlock(const PagedKvView& kv, int instance, const AttentionShape& s,
                                     const float* q, int64_t i0, int nb, int32_t p0,
                                     const int32_t* table, int g,
                                     void (*softmax)(float* x, int64_t len), float* out) {
  const int d = s.head_dim;
  const int group = s.num_heads / s.num_kv_heads;
  const int64_t qdim = int64_t{s.num_heads} * d;
  const int64_t len_max = int64_t{p0} + nb;  // keys of the last row
  const int64_t tiles = (len_max + kKeyTile - 1) / kKeyTile;
  const int64_t ld = tiles * kKeyTile;  // score row stride
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const int nv = nb * group;  // query vectors: row r, head h -> v = r * group + h
  thread_local std::vector<float> scores, kt, zero;
  thread_local std::vector<const float*> v_rows, k_rows;
  scores.resize(static_cast<size_t>(nv * ld));
  kt.resize(static_cast<size_t>(d * kKeyTile));
  zero.assign(static_cast<size_t>(d), 0.0f);
  v_rows.resize(static_cast<size_t>(len_max));
  k_rows.resize(static_cast<size_t>(kKeyTile));
  for (int64_t p = 0; p < len_max; ++p) {
    v_rows[p] = kv.RowAt(table, instance, 1, p) + int64_t{g} * d;
  }
  const __m512 vscale = _mm512_set1_ps(scale);
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t k0 = t * kKeyTile;
    for (int j = 0; j < kKeyTile; ++j) {
      k_rows[j] =
          k0 + j < len_max ? kv.RowAt(table, instance, 0, k0 + j) + int64_t{g} * d : zero.data();
    }
    for (int c = 0; c < d; ++c) {
      for (int j = 0; j < kKeyTile; ++j) kt[c * kKeyTile + j] = k_rows[j][c];
    }
    for (int r = 0; r < nb; ++r) {
      if (k0 > int64_t{p0} + r) continue;  // the whole tile is in this row's future
      const float* q_row = q + (i0 + r) * qdim + int64_t{g} * group * d;
      for (int h = 0; h < group; ++h) {
        const __m512 sc = _mm512_mul_ps(TileScores(q_row + h * d, kt.data(), d), vscale);
        _mm512_storeu_ps(scores.data() + (r * group + h) * ld + k0, sc);
      }
    }
  }
  std::vector<int64_t> lens(static_cast<size_t>(nv));
  std::vector<float*> outs(static_cast<size_t>(nv));
  for (int r = 0; r < nb; ++r) {
    const int64_t len = int64_t{p0} + r + 1;
    for (int h = 0; h < group; ++h) {
      const int v = r * group + h;
      float* row = scores.data() + v * ld;
      softmax(row, len);
      std::fill(row + len, row + len_max, 0.0f);
      lens[v] = len;
      outs[v] = out + (i0 + r) * qdim + int64_t{g * group + h} * d;
    }
  }
  int v = 0;
  for (; v + 4 <= nv; v += 4) {
    WeightedSums<4>(v_rows.data(), scores.data() + v * ld, ld, lens.data() + v, d, outs.data() + v);
  }
  for (; v < nv; ++v) {
    WeightedSums<1>(v_rows.data(), scores.data() + v * ld, ld, lens.data() + v, d, outs.data() + v);
  }
}

}  // namespace loopserve::internal

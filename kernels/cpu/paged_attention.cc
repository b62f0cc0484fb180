// Paged causal attention on the CPU: one task per (query row, KV head), so
// the heads sharing a KV head (GQA) read each K/V row once.
#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "kernels/cpu/attention_row_block.h"
#include "kernels/cpu/op_profile.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cpu/vec_exp.h"

namespace loopserve {
namespace {

// The two inner loops of attention over gathered K/V row pointers:
//   scores: rows (len, d), q (heads, d) -> scores (heads, len) = q·rowᵀ · scale
//   weighted_sum: rows (len, d), w (len) -> out (d) = Σ_p w[p] rows[p]
struct VecOps {
  void (*scores)(const float* q, int heads, int d, const float* const* rows, int64_t len,
                 float scale, float* scores);
  void (*weighted_sum)(const float* const* rows, const float* w, int64_t len, int d, float* out);
  // x (len) in place -> softmax(x), max subtracted first
  void (*softmax)(float* x, int64_t len);
  // internal::AttendRowBlock gives results identical to these ops (the AVX2
  // ones) and may run blocks of prefill rows when the CPU has AVX-512.
  bool row_block_identical = false;
};

void SoftmaxScalar(float* x, int64_t len) {
  const float mx = *std::max_element(x, x + len);
  double sum = 0;
  for (int64_t p = 0; p < len; ++p) {
    x[p] = std::exp(x[p] - mx);
    sum += x[p];
  }
  const float inv_sum = static_cast<float>(1.0 / sum);
  for (int64_t p = 0; p < len; ++p) x[p] *= inv_sum;
}

void ScoresScalar(const float* q, int heads, int d, const float* const* rows, int64_t len,
                  float scale, float* scores) {
  for (int64_t p = 0; p < len; ++p) {
    for (int h = 0; h < heads; ++h) {
      const float* qh = q + int64_t{h} * d;
      float s[4] = {0, 0, 0, 0};
      int k = 0;
      for (; k + 4 <= d; k += 4) {
        for (int j = 0; j < 4; ++j) s[j] += qh[k + j] * rows[p][k + j];
      }
      for (; k < d; ++k) s[0] += qh[k] * rows[p][k];
      scores[h * len + p] = ((s[0] + s[1]) + (s[2] + s[3])) * scale;
    }
  }
}

void WeightedSumScalar(const float* const* rows, const float* w, int64_t len, int d, float* out) {
  std::fill(out, out + d, 0.0f);
  for (int64_t p = 0; p < len; ++p) {
    for (int k = 0; k < d; ++k) out[k] += w[p] * rows[p][k];
  }
}

#if defined(__x86_64__) || defined(__i386__)
#define LOOPSERVE_HAVE_AVX2_PATH 1
#define LOOPSERVE_AVX2 __attribute__((target("avx2,fma")))

LOOPSERVE_AVX2 inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// G query heads against one key row: the row is loaded once for all heads.
template <int G>
LOOPSERVE_AVX2 void ScoresTile(const float* q, int d, const float* row, float scale, float* scores,
                               int64_t len) {
  __m256 acc[G];
#pragma GCC unroll 4
  for (int h = 0; h < G; ++h) acc[h] = _mm256_setzero_ps();
  int k = 0;
  for (; k + 8 <= d; k += 8) {
    const __m256 kv = _mm256_loadu_ps(row + k);
#pragma GCC unroll 4
    for (int h = 0; h < G; ++h) {
      acc[h] = _mm256_fmadd_ps(_mm256_loadu_ps(q + h * d + k), kv, acc[h]);
    }
  }
  float sums[G];
#pragma GCC unroll 4
  for (int h = 0; h < G; ++h) sums[h] = HorizontalSum(acc[h]);
  for (int h = 0; h < G; ++h) {
    for (int kk = k; kk < d; ++kk) sums[h] += q[h * d + kk] * row[kk];
    scores[h * len] = sums[h] * scale;
  }
}

LOOPSERVE_AVX2 void ScoresAvx2(const float* q, int heads, int d, const float* const* rows,
                               int64_t len, float scale, float* scores) {
  for (int64_t p = 0; p < len; ++p) {
    int h = 0;
    for (; h + 4 <= heads; h += 4)
      ScoresTile<4>(q + h * d, d, rows[p], scale, scores + h * len + p, len);
    for (; h < heads; ++h) ScoresTile<1>(q + h * d, d, rows[p], scale, scores + h * len + p, len);
  }
}

// out[c, c + 8*C) accumulated in registers over all positions.
template <int C>
LOOPSERVE_AVX2 void WeightedSumChunk(const float* const* rows, const float* w, int64_t len, int c,
                                     float* out) {
  __m256 acc[C];
#pragma GCC unroll 4
  for (int j = 0; j < C; ++j) acc[j] = _mm256_setzero_ps();
  for (int64_t p = 0; p < len; ++p) {
    const __m256 wp = _mm256_broadcast_ss(w + p);
    const float* r = rows[p] + c;
#pragma GCC unroll 4
    for (int j = 0; j < C; ++j) acc[j] = _mm256_fmadd_ps(wp, _mm256_loadu_ps(r + 8 * j), acc[j]);
  }
#pragma GCC unroll 4
  for (int j = 0; j < C; ++j) _mm256_storeu_ps(out + c + 8 * j, acc[j]);
}

LOOPSERVE_AVX2 void WeightedSumAvx2(const float* const* rows, const float* w, int64_t len, int d,
                                    float* out) {
  int c = 0;
  for (; c + 32 <= d; c += 32) WeightedSumChunk<4>(rows, w, len, c, out);
  for (; c + 8 <= d; c += 8) WeightedSumChunk<1>(rows, w, len, c, out);
  for (; c < d; ++c) {
    float s = 0;
    for (int64_t p = 0; p < len; ++p) s += w[p] * rows[p][c];
    out[c] = s;
  }
}

LOOPSERVE_AVX2 void SoftmaxAvx2(float* x, int64_t len) {
  const int64_t len8 = len & ~int64_t{7};
  float mx = x[0];
  if (len8 > 0) {
    __m256 m = _mm256_loadu_ps(x);
    for (int64_t p = 8; p < len8; p += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + p));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, m);
    mx = *std::max_element(lanes, lanes + 8);
  }
  for (int64_t p = len8; p < len; ++p) mx = std::max(mx, x[p]);
  const __m256 vmx = _mm256_set1_ps(mx);
  __m256d sum4 = _mm256_setzero_pd();  // positive terms: double keeps long rows exact enough
  for (int64_t p = 0; p < len8; p += 8) {
    const __m256 e = internal::Exp8(_mm256_sub_ps(_mm256_loadu_ps(x + p), vmx));
    _mm256_storeu_ps(x + p, e);
    sum4 = _mm256_add_pd(sum4, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    sum4 = _mm256_add_pd(sum4, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  alignas(32) double parts[4];
  _mm256_store_pd(parts, sum4);
  double sum = (parts[0] + parts[1]) + (parts[2] + parts[3]);
  for (int64_t p = len8; p < len; ++p) {
    x[p] = std::exp(x[p] - mx);
    sum += x[p];
  }
  const __m256 inv = _mm256_set1_ps(static_cast<float>(1.0 / sum));
  for (int64_t p = 0; p < len8; p += 8)
    _mm256_storeu_ps(x + p, _mm256_mul_ps(_mm256_loadu_ps(x + p), inv));
  for (int64_t p = len8; p < len; ++p) x[p] *= static_cast<float>(1.0 / sum);
}
#endif

VecOps PickVecOps(bool allow_simd) {
#ifdef LOOPSERVE_HAVE_AVX2_PATH
  if (allow_simd && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    return {ScoresAvx2, WeightedSumAvx2, SoftmaxAvx2, /*row_block_identical=*/true};
  }
#endif
  (void)allow_simd;
  return {ScoresScalar, WeightedSumScalar, SoftmaxScalar};
}

// Query row i, KV head g: the `group` query heads g*group.. attend keys
// 0..positions[i]; softmax per head with its own max (f32, stable).
//   q (H*d) row -> out (H*d) row, heads [g*group, (g+1)*group)
void AttendGroup(const VecOps& ops, const PagedKvView& kv, int instance, const AttentionShape& s,
                 const float* q_row, int64_t i, int32_t pos_i, const int32_t* table,
                 const float* self_k, const float* self_v, int g, float* out_row) {
  const int d = s.head_dim;
  const int group = s.num_heads / s.num_kv_heads;
  const int64_t len = int64_t{pos_i} + 1;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  thread_local std::vector<float> scores;
  thread_local std::vector<const float*> k_rows, v_rows;
  scores.resize(static_cast<size_t>(group * len));
  k_rows.resize(static_cast<size_t>(len));
  v_rows.resize(static_cast<size_t>(len));
  // Gather the row pointers once: the paging lookup then stays out of the
  // inner loops.
  for (int64_t p = 0; p < len; ++p) {
    k_rows[p] = kv.RowAt(table, instance, 0, p) + int64_t{g} * d;
    v_rows[p] = kv.RowAt(table, instance, 1, p) + int64_t{g} * d;
  }
  if (self_k != nullptr) k_rows[pos_i] = self_k + i * kv.kv_dim + int64_t{g} * d;
  if (self_v != nullptr) v_rows[pos_i] = self_v + i * kv.kv_dim + int64_t{g} * d;

  const float* q_group = q_row + int64_t{g} * group * d;
  ops.scores(q_group, group, d, k_rows.data(), len, scale, scores.data());
  for (int h = 0; h < group; ++h) {
    float* sc = scores.data() + h * len;
    ops.softmax(sc, len);
    ops.weighted_sum(v_rows.data(), sc, len, d, out_row + int64_t{g * group + h} * d);
  }
}

void PagedAttentionImpl(const VecOps& ops, const PagedKvView& kv, int instance,
                        const AttentionShape& shape, const float* q, int64_t n,
                        const int32_t* positions, const int32_t* const* block_tables,
                        const float* self_k, const float* self_v, float* out, ThreadPool* pool) {
  op_profile::Scope profile("paged_attention");
  if (profile.active()) {  // q·k and p·v over every key of every row
    double keys = 0;
    for (int64_t i = 0; i < n; ++i) keys += positions[i] + 1;
    profile.Count(0, 4.0 * shape.num_heads * shape.head_dim * keys);
  }
  const int64_t qdim = int64_t{shape.num_heads} * shape.head_dim;
  if (self_k == nullptr && self_v == nullptr && ops.row_block_identical &&
      internal::AttendRowBlockSupported(shape.head_dim)) {
    // Runs of consecutive positions of one sequence (prefill chunks) go in
    // blocks of rows sharing each K/V tile; lone rows (decode) keep the row
    // path. Both give the same bits.
    std::vector<std::pair<int64_t, int>> blocks;  // (first row, rows)
    bool any_block = false;
    for (int64_t i = 0; i < n;) {
      int nb = 1;
      while (i + nb < n && nb < internal::kAttentionRowBlock &&
             block_tables[i + nb] == block_tables[i] &&
             positions[i + nb] == positions[i + nb - 1] + 1) {
        ++nb;
      }
      blocks.emplace_back(i, nb);
      any_block |= nb > 1;
      i += nb;
    }
    if (any_block) {
      const int64_t tasks = static_cast<int64_t>(blocks.size()) * shape.num_kv_heads;
      auto run_blocks = [&](int64_t begin, int64_t end) {
        for (int64_t z = begin; z < end; ++z) {
          const int64_t t = z % 2 == 0 ? z / 2 : tasks - 1 - z / 2;  // zigzag, as below
          const auto [i0, nb] = blocks[t / shape.num_kv_heads];
          const int g = static_cast<int>(t % shape.num_kv_heads);
          if (nb == 1) {
            AttendGroup(ops, kv, instance, shape, q + i0 * qdim, i0, positions[i0],
                        block_tables[i0], nullptr, nullptr, g, out + i0 * qdim);
          } else {
            internal::AttendRowBlock(kv, instance, shape, q, i0, nb, positions[i0],
                                     block_tables[i0], g, ops.softmax, out);
          }
        }
      };
      if (pool == nullptr || pool->num_threads() == 1) {
        run_blocks(0, tasks);
      } else {
        pool->ParallelFor(tasks, 1, run_blocks);
      }
      return;
    }
  }
  const int64_t tasks = n * shape.num_kv_heads;
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t z = begin; z < end; ++z) {
      // Zigzag order (0, last, 1, last-1, ...): a contiguous chunk mixes the
      // short and long causal rows of a prefill, balancing the threads.
      const int64_t t = z % 2 == 0 ? z / 2 : tasks - 1 - z / 2;
      const int64_t i = t / shape.num_kv_heads;
      const int g = static_cast<int>(t % shape.num_kv_heads);
      AttendGroup(ops, kv, instance, shape, q + i * qdim, i, positions[i], block_tables[i], self_k,
                  self_v, g, out + i * qdim);
    }
  };
  if (pool == nullptr || pool->num_threads() == 1) {
    run(0, tasks);
  } else {
    pool->ParallelFor(tasks, 1, run);
  }
}

}  // namespace

// q (n, H*d) -> out (n, H*d), keys/values from the pool (or self_k/self_v)
void PagedAttention(const PagedKvView& kv, int instance, const AttentionShape& shape,
                    const float* q, int64_t n, const int32_t* positions,
                    const int32_t* const* block_tables, const float* self_k, const float* self_v,
                    float* out, ThreadPool* pool) {
  static const VecOps ops = PickVecOps(/*allow_simd=*/true);
  PagedAttentionImpl(ops, kv, instance, shape, q, n, positions, block_tables, self_k, self_v, out,
                     pool);
}

void PagedAttentionPortable(const PagedKvView& kv, int instance, const AttentionShape& shape,
                            const float* q, int64_t n, const int32_t* positions,
                            const int32_t* const* block_tables, const float* self_k,
                            const float* self_v, float* out, ThreadPool* pool) {
  PagedAttentionImpl(PickVecOps(/*allow_simd=*/false), kv, instance, shape, q, n, positions,
                     block_tables, self_k, self_v, out, pool);
}

}  // namespace loopserve

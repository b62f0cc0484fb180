// AVX2 Linear tiles: a fused widen-and-dot kernel for decode and a packed
// GEMM for prefill. Everything here is compiled for avx2/fma/f16c only via
// target attributes so the rest of the binary stays portable.
#include "kernels/cpu/linear_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/widen.h"

#define LOOPSERVE_AVX2 __attribute__((target("avx2,fma,f16c")))
#define LOOPSERVE_AVX2_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline

namespace loopserve::internal {
namespace {

// 8 consecutive weights starting at element `i`, widened to f32.
template <DType T>
LOOPSERVE_AVX2_INLINE __m256 Load8(const void* base, int64_t i) {
  if constexpr (T == DType::kF32) {
    return _mm256_loadu_ps(static_cast<const float*>(base) + i);
  } else {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i));
    if constexpr (T == DType::kF16) {
      return _mm256_cvtph_ps(h);
    } else {  // bf16 is the high half of an f32
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
  }
}

LOOPSERVE_AVX2_INLINE float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---- Decode: NB weight rows x MB x rows per tile ---------------------------

// x (MB, K) rows at stride K, W rows n..n+NB -> y[r * ldy + n + j].
// 4x3 accumulators + 3 x vectors + 1 weight vector fit the 16 ymm registers.
template <DType T, int NB, int MB>
LOOPSERVE_AVX2 void DotTile(const float* x, int64_t k_total, const void* w, int64_t n, float* y,
                            int64_t ldy) {
  __m256 acc[NB][MB];
#pragma GCC unroll 4
  for (int j = 0; j < NB; ++j) {
#pragma GCC unroll 4
    for (int r = 0; r < MB; ++r) acc[j][r] = _mm256_setzero_ps();
  }
  const int64_t k_vec = k_total & ~int64_t{7};
  // The next tile's W rows are prefetched a whole tile ahead, at the same
  // column: the hardware prefetcher alone leaves batched decode (compute
  // between loads) waiting on DRAM latency. Integer arithmetic: after the
  // last tile the address is past W, which a prefetch may name but a
  // pointer may not.
  const int64_t row_bytes = k_total * DTypeSize(T);
  const uintptr_t next = reinterpret_cast<uintptr_t>(w) + (n + NB) * row_bytes;
  for (int64_t k = 0; k < k_vec; k += 8) {
    if ((k * DTypeSize(T)) % 64 == 0) {
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) {
        _mm_prefetch(reinterpret_cast<const char*>(next + j * row_bytes + k * DTypeSize(T)),
                     _MM_HINT_T0);
      }
    }
    __m256 xv[MB];
#pragma GCC unroll 4
    for (int r = 0; r < MB; ++r) xv[r] = _mm256_loadu_ps(x + r * k_total + k);
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) {
      const __m256 wv = Load8<T>(w, (n + j) * k_total + k);
#pragma GCC unroll 4
      for (int r = 0; r < MB; ++r) acc[j][r] = _mm256_fmadd_ps(wv, xv[r], acc[j][r]);
    }
  }
  // Reduce with fully unrolled loops: indexing acc dynamically would make
  // GCC keep the accumulators in memory inside the hot loop.
  float sums[NB][MB];
#pragma GCC unroll 4
  for (int j = 0; j < NB; ++j) {
#pragma GCC unroll 4
    for (int r = 0; r < MB; ++r) sums[j][r] = HorizontalSum(acc[j][r]);
  }
  for (int j = 0; j < NB; ++j) {
    for (int r = 0; r < MB; ++r) {
      float s = sums[j][r];
      for (int64_t k = k_vec; k < k_total; ++k) {
        s += WidenAt(w, T, (n + j) * k_total + k) * x[r * k_total + k];
      }
      y[r * ldy + n + j] = s;
    }
  }
}

// All m x rows against W rows [n, n + NB): the weight tile stays in L1 while
// x is walked in blocks of at most 3 rows.
template <DType T, int NB>
LOOPSERVE_AVX2 void DotRows(const float* x, int64_t m, int64_t k_total, const void* w, int64_t n,
                            float* y, int64_t ldy) {
  int64_t i = 0;
  for (; i + 3 <= m; i += 3) DotTile<T, NB, 3>(x + i * k_total, k_total, w, n, y + i * ldy, ldy);
  if (m - i == 2) DotTile<T, NB, 2>(x + i * k_total, k_total, w, n, y + i * ldy, ldy);
  if (m - i == 1) DotTile<T, NB, 1>(x + i * k_total, k_total, w, n, y + i * ldy, ldy);
}

template <DType T>
LOOPSERVE_AVX2 void Decode(const float* x, int64_t m, const MatrixView& w, float* y,
                           int64_t n_begin, int64_t n_end) {
  const int64_t k_total = w.cols;
  int64_t n = n_begin;
  for (; n + 4 <= n_end; n += 4) DotRows<T, 4>(x, m, k_total, w.data, n, y, w.rows);
  for (; n < n_end; ++n) DotRows<T, 1>(x, m, k_total, w.data, n, y, w.rows);
}

// ---- Prefill: packed panels + 6x16 micro-kernel ---------------------------

// Cache blocking: a packed block of kKc x kNc f32 (128 KiB) sits in L2 and
// a 6 x kKc slice of x (6 KiB) in L1 while the micro-kernel walks the block.
constexpr int64_t kKc = 256;
constexpr int64_t kNc = 128;
constexpr int64_t kNr = kGemmPanelCols;
constexpr int64_t kMr = kGemmTileRows;

// In-register 8x8 transpose: rows r[0..8) -> columns.
LOOPSERVE_AVX2_INLINE void Transpose8x8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// W rows [n, n+16) ∩ [.., n_end), cols [k0, k0+kc) -> packed (kc, 16) f32 at
// row stride ld, rows past n_end zero so the micro-kernel needs no column tail.
template <DType T>
LOOPSERVE_AVX2 void PackPanel(const MatrixView& w, int64_t n, int64_t n_end, int64_t k0, int64_t kc,
                              float* packed, int64_t ld) {
  const int64_t k_total = w.cols;
  const int64_t valid = std::min(kNr, n_end - n);
  int64_t k = 0;
  for (; k + 8 <= kc; k += 8) {
    for (int half = 0; half < 2; ++half) {
      __m256 r[8];
      for (int j = 0; j < 8; ++j) {
        const int64_t row = half * 8 + j;
        r[j] = row < valid ? Load8<T>(w.data, (n + row) * k_total + k0 + k) : _mm256_setzero_ps();
      }
      Transpose8x8(r);
      for (int kk = 0; kk < 8; ++kk) _mm256_storeu_ps(packed + (k + kk) * ld + half * 8, r[kk]);
    }
  }
  for (; k < kc; ++k) {
    for (int64_t j = 0; j < kNr; ++j) {
      packed[k * ld + j] = j < valid ? WidenAt(w.data, T, (n + j) * k_total + k0 + k) : 0.0f;
    }
  }
}

// x (MR, kc) at stride ldx, packed (kc, 16) -> y (MR, cols) at stride ldy;
// adds to y when `accumulate` (later K blocks).
template <int MR>
LOOPSERVE_AVX2 void MicroKernel(const float* x, int64_t ldx, const float* packed, int64_t kc,
                                float* y, int64_t ldy, int64_t cols, bool accumulate) {
  __m256 acc[MR][2];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(packed + k * kNr);
    const __m256 b1 = _mm256_loadu_ps(packed + k * kNr + 8);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const __m256 a = _mm256_broadcast_ss(x + r * ldx + k);
      acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
    }
  }
  // Spill through a tile with fully unrolled stores: indexing acc
  // dynamically would make GCC keep the accumulators in memory in the k loop.
  alignas(32) float tile[MR][kNr];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    _mm256_store_ps(tile[r], acc[r][0]);
    _mm256_store_ps(tile[r] + 8, acc[r][1]);
  }
  for (int r = 0; r < MR; ++r) {
    float* yr = y + r * ldy;
    if (cols == kNr) {
      __m256 lo = _mm256_load_ps(tile[r]), hi = _mm256_load_ps(tile[r] + 8);
      if (accumulate) {
        lo = _mm256_add_ps(lo, _mm256_loadu_ps(yr));
        hi = _mm256_add_ps(hi, _mm256_loadu_ps(yr + 8));
      }
      _mm256_storeu_ps(yr, lo);
      _mm256_storeu_ps(yr + 8, hi);
    } else {
      for (int64_t j = 0; j < cols; ++j) yr[j] = accumulate ? yr[j] + tile[r][j] : tile[r][j];
    }
  }
}

LOOPSERVE_AVX2 void MicroKernelRows(int64_t rows, const float* x, int64_t ldx, const float* packed,
                                    int64_t kc, float* y, int64_t ldy, int64_t cols,
                                    bool accumulate) {
  switch (rows) {
    case 6:
      return MicroKernel<6>(x, ldx, packed, kc, y, ldy, cols, accumulate);
    case 5:
      return MicroKernel<5>(x, ldx, packed, kc, y, ldy, cols, accumulate);
    case 4:
      return MicroKernel<4>(x, ldx, packed, kc, y, ldy, cols, accumulate);
    case 3:
      return MicroKernel<3>(x, ldx, packed, kc, y, ldy, cols, accumulate);
    case 2:
      return MicroKernel<2>(x, ldx, packed, kc, y, ldy, cols, accumulate);
    default:
      return MicroKernel<1>(x, ldx, packed, kc, y, ldy, cols, accumulate);
  }
}

template <DType T>
LOOPSERVE_AVX2 void Gemm(const float* x, const MatrixView& w, float* y, int64_t m_begin,
                         int64_t m_end, int64_t n_begin, int64_t n_end) {
  const int64_t k_total = w.cols;
  const int64_t ldy = w.rows;
  thread_local std::vector<float> packed;
  packed.resize(kKc * kNc);
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kNc) {
    const int64_t n1 = std::min(n_end, n0 + kNc);
    for (int64_t k0 = 0; k0 < k_total; k0 += kKc) {
      const int64_t kc = std::min(kKc, k_total - k0);
      for (int64_t n = n0; n < n1; n += kNr) {
        PackPanel<T>(w, n, n1, k0, kc, packed.data() + (n - n0) * kc, kNr);
      }
      for (int64_t i = m_begin; i < m_end; i += kMr) {
        const int64_t rows = std::min(kMr, m_end - i);
        for (int64_t n = n0; n < n1; n += kNr) {
          MicroKernelRows(rows, x + i * k_total + k0, k_total, packed.data() + (n - n0) * kc, kc,
                          y + i * ldy + n, ldy, std::min(kNr, n1 - n), k0 > 0);
        }
      }
    }
  }
}

}  // namespace

void LinearDecodeAvx2(const float* x, int64_t m, const MatrixView& w, float* y, int64_t n_begin,
                      int64_t n_end) {
  switch (w.dtype) {
    case DType::kF32:
      return Decode<DType::kF32>(x, m, w, y, n_begin, n_end);
    case DType::kF16:
      return Decode<DType::kF16>(x, m, w, y, n_begin, n_end);
    case DType::kBF16:
      return Decode<DType::kBF16>(x, m, w, y, n_begin, n_end);
  }
}

void PackPanelAvx2(const MatrixView& w, int64_t n, int64_t n_end, int64_t k0, int64_t kc,
                   float* packed, int64_t ld) {
  switch (w.dtype) {
    case DType::kF32:
      return PackPanel<DType::kF32>(w, n, n_end, k0, kc, packed, ld);
    case DType::kF16:
      return PackPanel<DType::kF16>(w, n, n_end, k0, kc, packed, ld);
    case DType::kBF16:
      return PackPanel<DType::kBF16>(w, n, n_end, k0, kc, packed, ld);
  }
}

void LinearGemmAvx2(const float* x, const MatrixView& w, float* y, int64_t m_begin, int64_t m_end,
                    int64_t n_begin, int64_t n_end) {
  switch (w.dtype) {
    case DType::kF32:
      return Gemm<DType::kF32>(x, w, y, m_begin, m_end, n_begin, n_end);
    case DType::kF16:
      return Gemm<DType::kF16>(x, w, y, m_begin, m_end, n_begin, n_end);
    case DType::kBF16:
      return Gemm<DType::kBF16>(x, w, y, m_begin, m_end, n_begin, n_end);
  }
}

}  // namespace loopserve::internal

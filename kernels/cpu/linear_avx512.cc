// AVX-512 Linear tiles: on Zen 5 (and Intel server cores) 512-bit FMAs run at
// twice the 256-bit throughput, which is what the compute-bound shapes
// (batched decode m >= 4, prefill) need. Compiled only via target attributes
// so the rest of the binary stays portable. K tails use masked loads, N tails
// masked stores.
#include "kernels/cpu/linear_avx512.h"

#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/linear_avx2.h"

// GCC 12's AVX-512 intrinsics (casts, shuffles, reductions) pass a
// self-initialised "undefined" vector to the builtins and trip
// -Wuninitialized where they are inlined; the warning is about the header.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define LOOPSERVE_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define LOOPSERVE_AVX512_INLINE \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"), always_inline)) inline

namespace loopserve::internal {
namespace {

// 16 consecutive weights from element `i`, widened to f32; lanes outside
// `mask` are zero (and not read).
template <DType T>
LOOPSERVE_AVX512_INLINE __m512 Load16(const void* base, int64_t i, __mmask16 mask) {
  if constexpr (T == DType::kF32) {
    return _mm512_maskz_loadu_ps(mask, static_cast<const float*>(base) + i);
  } else {
    const __m256i h = _mm256_maskz_loadu_epi16(mask, static_cast<const uint16_t*>(base) + i);
    if constexpr (T == DType::kF16) {
      return _mm512_cvtph_ps(h);
    } else {  // bf16 is the high half of an f32
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
  }
}

template <DType T>
LOOPSERVE_AVX512_INLINE __m512 Load16(const void* base, int64_t i) {
  if constexpr (T == DType::kF32) {
    return _mm512_loadu_ps(static_cast<const float*>(base) + i);
  } else {
    const __m256i h = _mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(base) + i));
    if constexpr (T == DType::kF16) {
      return _mm512_cvtph_ps(h);
    } else {
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
  }
}

// Sum of the 16 lanes.
LOOPSERVE_AVX512_INLINE float HorizontalSum(__m512 v) {
  const __m512 folded = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  const __m256 h = _mm512_castps512_ps256(folded);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---- Decode: NB weight rows x MB x rows per tile ---------------------------

// x (MB, K) rows at stride K, W rows n..n+NB -> y[r * ldy + n + j].
// 4x4 accumulators + 4 x vectors + 1 weight vector: 21 of the 32 zmm.
template <DType T, int NB, int MB>
LOOPSERVE_AVX512 void DotTile(const float* x, int64_t k_total, const void* w, int64_t n, float* y,
                              int64_t ldy) {
  __m512 acc[NB][MB];
#pragma GCC unroll 4
  for (int j = 0; j < NB; ++j) {
#pragma GCC unroll 4
    for (int r = 0; r < MB; ++r) acc[j][r] = _mm512_setzero_ps();
  }
  const int64_t k_vec = k_total & ~int64_t{15};
  // The next tile's W rows are prefetched a whole tile ahead, at the
  // same column: the hardware prefetcher alone leaves batched decode
  // (compute between loads) waiting on DRAM latency.
  // (Integer arithmetic: after the last tile the address is past W, which
  // a prefetch may name but a pointer may not.)
  const int64_t row_bytes = k_total * DTypeSize(T);
  const uintptr_t next = reinterpret_cast<uintptr_t>(w) + (n + NB) * row_bytes;
  for (int64_t k = 0; k < k_vec; k += 16) {
    if ((k * DTypeSize(T)) % 64 == 0) {
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) {
        _mm_prefetch(reinterpret_cast<const char*>(next + j * row_bytes + k * DTypeSize(T)),
                     _MM_HINT_T0);
      }
    }
    __m512 xv[MB];
#pragma GCC unroll 4
    for (int r = 0; r < MB; ++r) xv[r] = _mm512_loadu_ps(x + r * k_total + k);
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) {
      const __m512 wv = Load16<T>(w, (n + j) * k_total + k);
#pragma GCC unroll 4
      for (int r = 0; r < MB; ++r) acc[j][r] = _mm512_fmadd_ps(wv, xv[r], acc[j][r]);
    }
  }
  if (k_vec < k_total) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (k_total - k_vec)) - 1);
    __m512 xv[MB];
#pragma GCC unroll 4
    for (int r = 0; r < MB; ++r) xv[r] = _mm512_maskz_loadu_ps(mask, x + r * k_total + k_vec);
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) {
      const __m512 wv = Load16<T>(w, (n + j) * k_total + k_vec, mask);
#pragma GCC unroll 4
      for (int r = 0; r < MB; ++r) acc[j][r] = _mm512_fmadd_ps(wv, xv[r], acc[j][r]);
    }
  }
#pragma GCC unroll 4
  for (int j = 0; j < NB; ++j) {
#pragma GCC unroll 4
    for (int r = 0; r < MB; ++r) y[r * ldy + n + j] = HorizontalSum(acc[j][r]);
  }
}

// All m x rows against W rows [n, n + NB): the weight tile stays in L1 while
// x is walked in blocks of at most 4 rows.
template <DType T, int NB>
LOOPSERVE_AVX512 void DotRows(const float* x, int64_t m, int64_t k_total, const void* w, int64_t n,
                              float* y, int64_t ldy) {
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) DotTile<T, NB, 4>(x + i * k_total, k_total, w, n, y + i * ldy, ldy);
  switch (m - i) {
    case 3:
      return DotTile<T, NB, 3>(x + i * k_total, k_total, w, n, y + i * ldy, ldy);
    case 2:
      return DotTile<T, NB, 2>(x + i * k_total, k_total, w, n, y + i * ldy, ldy);
    case 1:
      return DotTile<T, NB, 1>(x + i * k_total, k_total, w, n, y + i * ldy, ldy);
    default:
      return;
  }
}

template <DType T>
LOOPSERVE_AVX512 void Decode(const float* x, int64_t m, const MatrixView& w, float* y,
                             int64_t n_begin, int64_t n_end) {
  const int64_t k_total = w.cols;
  int64_t n = n_begin;
  for (; n + 4 <= n_end; n += 4) DotRows<T, 4>(x, m, k_total, w.data, n, y, w.rows);
  for (; n < n_end; ++n) DotRows<T, 1>(x, m, k_total, w.data, n, y, w.rows);
}

// ---- Prefill: packed 32-wide panels + 12x32 micro-kernel --------------------

// A packed block of kKc x kNc f32 (128 KiB) sits in L2 and a 12 x kKc slice
// of x (12 KiB) in L1 while the micro-kernel walks the block.
constexpr int64_t kKc = 256;
constexpr int64_t kNc = 128;
constexpr int64_t kNr = kGemm512PanelCols;
constexpr int64_t kMr = kGemm512TileRows;

// x (MR, kc) at stride ldx, packed (kc, 32) -> y (MR, cols) at stride ldy;
// adds to y when `accumulate` (later K blocks). 24 accumulators + 2 panel
// vectors + 1 broadcast fit the 32 zmm registers.
template <int MR>
LOOPSERVE_AVX512 void MicroKernel(const float* x, int64_t ldx, const float* packed, int64_t kc,
                                  float* y, int64_t ldy, int64_t cols, bool accumulate) {
  __m512 acc[MR][2];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(packed + k * kNr);
    const __m512 b1 = _mm512_loadu_ps(packed + k * kNr + 16);
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512 a = _mm512_set1_ps(x[r * ldx + k]);
      acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
    }
  }
  const __mmask16 m0 = cols >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << cols) - 1);
  const __mmask16 m1 =
      cols >= 32 ? 0xFFFF : (cols <= 16 ? 0 : static_cast<__mmask16>((1u << (cols - 16)) - 1));
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    float* yr = y + r * ldy;
    __m512 lo = acc[r][0], hi = acc[r][1];
    if (accumulate) {
      lo = _mm512_add_ps(lo, _mm512_maskz_loadu_ps(m0, yr));
      hi = _mm512_add_ps(hi, _mm512_maskz_loadu_ps(m1, yr + 16));
    }
    _mm512_mask_storeu_ps(yr, m0, lo);
    _mm512_mask_storeu_ps(yr + 16, m1, hi);
  }
}

template <int MR = kMr>
LOOPSERVE_AVX512 void MicroKernelRows(int64_t rows, const float* x, int64_t ldx,
                                      const float* packed, int64_t kc, float* y, int64_t ldy,
                                      int64_t cols, bool accumulate) {
  if constexpr (MR > 0) {
    if (rows == MR) return MicroKernel<MR>(x, ldx, packed, kc, y, ldy, cols, accumulate);
    return MicroKernelRows<MR - 1>(rows, x, ldx, packed, kc, y, ldy, cols, accumulate);
  }
}

template <DType T>
LOOPSERVE_AVX512 void Gemm(const float* x, const MatrixView& w, float* y, int64_t m_begin,
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
        float* panel = packed.data() + (n - n0) * kc;
        PackPanelAvx2(w, n, n1, k0, kc, panel, kNr);
        PackPanelAvx2(w, n + 16, n1, k0, kc, panel + 16, kNr);
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

void LinearDecodeAvx512(const float* x, int64_t m, const MatrixView& w, float* y, int64_t n_begin,
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

void LinearGemmAvx512(const float* x, const MatrixView& w, float* y, int64_t m_begin, int64_t m_end,
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

// AVX2+FMA+F16C tiles of Linear (y = x · Wᵀ), compiled with per-function
// target attributes; linear.cc checks the CPU before calling them.
#pragma once

#include <cstdint>

#include "kernels/common/weight_view.h"

namespace loopserve::internal {

// Few x rows (decode): streams W rows [n_begin, n_end) once, widening in
// registers, and applies each to every x row.
//   x (m, K), W [N, K] -> y[:, n_begin:n_end] of y (m, N)
void LinearDecodeAvx2(const float* x, int64_t m, const MatrixView& w, float* y, int64_t n_begin,
                      int64_t n_end);

// Many x rows (prefill): packs panels of W to f32 once per cache block and
// reuses them across x rows in a 6x16 register-blocked micro-kernel.
//   x (m, K), W [N, K] -> y[m_begin:m_end, n_begin:n_end] of y (m, N)
void LinearGemmAvx2(const float* x, const MatrixView& w, float* y, int64_t m_begin, int64_t m_end,
                    int64_t n_begin, int64_t n_end);

// W rows [n, n+16) ∩ [.., n_end), cols [k0, k0+kc) widened and transposed to
// packed (kc, 16) f32 at row stride ld >= 16; rows past n_end are zeros. The
// AVX-512 GEMM packs its 32-wide panels as two of these.
void PackPanelAvx2(const MatrixView& w, int64_t n, int64_t n_end, int64_t k0, int64_t kc,
                   float* packed, int64_t ld);

// Output columns per packed panel of LinearGemmAvx2 (threads split N in
// multiples of it) and x rows per micro-kernel call.
inline constexpr int64_t kGemmPanelCols = 16;
inline constexpr int64_t kGemmTileRows = 6;

}  // namespace loopserve::internal

// AVX-512 (F/BW/VL) tiles of Linear (y = x · Wᵀ), compiled with per-function
// target attributes; linear.cc checks the CPU before calling them. Same
// contract as linear_avx2.h: weights widened to f32 in registers, f32 FMAs
// (no bf16 dot products, so results stay f32-accurate).
#pragma once

#include <cstdint>

#include "kernels/common/weight_view.h"

namespace loopserve::internal {

// Few x rows (decode): streams W rows [n_begin, n_end) once, 16 weights per
// register, and applies each tile of 4 W rows to up to 4 x rows at a time.
//   x (m, K), W [N, K] -> y[:, n_begin:n_end] of y (m, N)
void LinearDecodeAvx512(const float* x, int64_t m, const MatrixView& w, float* y, int64_t n_begin,
                        int64_t n_end);

// Many x rows (prefill): packed 32-column f32 panels and a 12x32 micro-kernel.
//   x (m, K), W [N, K] -> y[m_begin:m_end, n_begin:n_end] of y (m, N)
void LinearGemmAvx512(const float* x, const MatrixView& w, float* y, int64_t m_begin, int64_t m_end,
                      int64_t n_begin, int64_t n_end);

// Output columns per packed panel of LinearGemmAvx512 (threads split N in
// multiples of it) and x rows per micro-kernel call.
inline constexpr int64_t kGemm512PanelCols = 32;
inline constexpr int64_t kGemm512TileRows = 12;

}  // namespace loopserve::internal

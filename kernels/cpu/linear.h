// Dense linear layer y = x · Wᵀ with W in checkpoint layout [out, in] and
// f32/f16/bf16 storage (widened to f32 in registers; accumulation in f32).
// AVX2+FMA+F16C path chosen at run time, portable scalar path otherwise.
#pragma once

#include <cstdint>

#include "kernels/common/weight_view.h"

namespace loopserve {

class ThreadPool;

// x (m, W.cols) -> y (m, W.rows). y must not alias x. pool may be null.
void Linear(const float* x, int64_t m, const MatrixView& w, float* y, ThreadPool* pool);

// Linear on the portable (non-SIMD) path whatever the CPU; tests cover it
// on machines where Linear itself dispatches to AVX2.
void LinearPortable(const float* x, int64_t m, const MatrixView& w, float* y, ThreadPool* pool);

// Scalar reference of Linear (double accumulation); tests compare to it.
void LinearReference(const float* x, int64_t m, const MatrixView& w, float* y);

// Whether the vectorised path is in use on this CPU (for logs and benches).
bool LinearUsesAvx2();

}  // namespace loopserve

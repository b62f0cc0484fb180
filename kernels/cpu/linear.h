// Dense linear layer y = x · Wᵀ with W in checkpoint layout [out, in] and
// f32/f16/bf16 storage (widened to f32 in registers; accumulation in f32).
// The widest SIMD path the CPU has (AVX-512 F/BW/VL, else AVX2+FMA+F16C) is
// chosen at run time, the portable scalar path otherwise.
#pragma once

#include <cstdint>
#include <span>

#include "kernels/common/weight_view.h"

namespace loopserve {

class ThreadPool;

// x (m, W.cols) -> y (m, W.rows). y must not alias x. pool may be null.
void Linear(const float* x, int64_t m, const MatrixView& w, float* y, ThreadPool* pool);

// One of several linears of the same input: y = x · wᵀ.
struct LinearTarget {
  MatrixView w;
  float* y;
};

// Linear for every target (all with w.cols == K) in ONE parallel region
// when m is decode-sized (q/k/v, gate/up): one fork-join instead of one per
// weight; each y is bit-identical to Linear's. Larger m runs them in turn.
//   x (m, K), W_j [N_j, K] -> y_j (m, N_j)
void LinearFused(const float* x, int64_t m, std::span<const LinearTarget> targets,
                 ThreadPool* pool);

// Linear on the portable (non-SIMD) path whatever the CPU; tests cover it
// on machines where Linear itself dispatches to AVX2.
void LinearPortable(const float* x, int64_t m, const MatrixView& w, float* y, ThreadPool* pool);

// Scalar reference of Linear (double accumulation); tests compare to it.
void LinearReference(const float* x, int64_t m, const MatrixView& w, float* y);

// Whether the vectorised path is in use on this CPU (for logs and benches).
bool LinearUsesAvx2();

// The code paths of Linear, widest last. Tests and benches force each one.
enum class LinearPath { kPortable, kAvx2, kAvx512 };

// Whether this CPU (and OS) can run `path`; kPortable always can.
bool LinearPathSupported(LinearPath path);
// The path Linear dispatches to on this CPU.
LinearPath LinearBestPath();
const char* LinearPathName(LinearPath path);

// Linear on the given path, which must be supported (checked).
void LinearWithPath(LinearPath path, const float* x, int64_t m, const MatrixView& w, float* y,
                    ThreadPool* pool);

}  // namespace loopserve

// Row-wise CPU kernels: embedding lookup, RMSNorm, RoPE, SwiGLU activation,
// IterAdaLN modulation, residual adds. Shapes in each comment.
#pragma once

#include <cstdint>

#include "kernels/common/weight_view.h"

namespace loopserve {

// ids (n) -> out (n, D): rows of the embedding table widened to f32.
void EmbeddingLookup(const MatrixView& table, const int32_t* ids, int64_t n, float* out);

// x (n, dim) -> out (n, dim): x / sqrt(mean(x²) + eps) * w. out may alias x.
void RmsNorm(const float* x, int64_t n, int64_t dim, const VectorView& w, float eps,
             float* out);

// x (n, heads*head_dim), in place: rotate-half RoPE at positions[i] per row.
void ApplyRope(float* x, int64_t n, int heads, int head_dim, const int32_t* positions,
               float theta);

// gate (n, I), up (n, I) -> out (n, I): silu(gate) * up. out may alias gate.
void SiluMul(const float* gate, const float* up, int64_t n, int64_t width, float* out);

// x (n, dim) in place: x * (1 + scale) + shift, with scale/shift (n, ld)
// rows (ld = stride between rows of the modulation tensor).
void Modulate(float* x, int64_t n, int64_t dim, const float* scale, const float* shift,
              int64_t ld);

// acc (n, dim) += gain ⊙ delta where gain is (n, ld) rows used as (1 + g),
// or plain acc += delta when gain is null.
void ResidualAdd(float* acc, const float* delta, int64_t n, int64_t dim, const float* gain,
                 int64_t ld);

}  // namespace loopserve

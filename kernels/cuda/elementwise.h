// Row-wise CUDA kernels of the forward (embedding, RMSNorm with IterAdaLN
// modulation, RoPE, SwiGLU, gated residual, gathers) on f32 activations.
// Each computes the per-element math of kernels/common/scalar_math.h, the
// code the CPU tests exercise. Launchers return the launch error.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/weight_view.h"

namespace loopserve::cuda {

// table (V, D) in `dtype`, ids (n) -> out (n, D) f32
cudaError_t Embedding(const void* table, DType dtype, const int32_t* ids, int64_t n, int64_t dim,
                      float* out, cudaStream_t stream);

// x (n, dim) -> out (n, dim) = RMSNorm(x; w), then * (1 + scale) + shift
// when scale/shift (rows of stride ld) are set (IterAdaLN). w (dim) f32.
cudaError_t RmsNorm(const float* x, int64_t n, int64_t dim, const float* w, float eps,
                    const float* scale, const float* shift, int64_t ld, float* out,
                    cudaStream_t stream);

// x (n, heads * head_dim) in place: rotate-half RoPE at positions (n).
cudaError_t Rope(float* x, int64_t n, int heads, int head_dim, const int32_t* positions,
                 float theta, cudaStream_t stream);

// gate, up (count) -> out (count) = silu(gate) * up (out may alias gate)
cudaError_t SiluMul(const float* gate, const float* up, int64_t count, float* out,
                    cudaStream_t stream);

// acc (n, dim) += (1 + gain) * delta; gain rows of stride ld, or null (+=).
cudaError_t ResidualAdd(float* acc, const float* delta, int64_t n, int64_t dim, const float* gain,
                        int64_t ld, cudaStream_t stream);

// x (n, width) = silu(x + row) with row (width): IterAdaLN's c.
cudaError_t AddRowSilu(float* x, int64_t n, int64_t width, const float* row, cudaStream_t stream);

// x (n, width) += bias (width)
cudaError_t AddBias(float* x, int64_t n, int64_t width, const float* bias, cudaStream_t stream);

// x (count) += y (count)
cudaError_t AddInPlace(float* x, const float* y, int64_t count, cudaStream_t stream);

// x (count) = sigmoid(x + bias[0])
cudaError_t SigmoidBias(float* x, int64_t count, const float* bias, cudaStream_t stream);

// f32 (count) -> bf16 or f16 (count), for GEMM inputs.
cudaError_t ConvertF32(const float* in, int64_t count, DType to, void* out, cudaStream_t stream);

// out (m, dim) = in[rows[i]]
cudaError_t GatherRows(const float* in, const int32_t* rows, int64_t m, int64_t dim, float* out,
                       cudaStream_t stream);

// out[rows[i]] = in[i] for i < m, rows of dim (out has at least max(rows)+1)
cudaError_t ScatterRows(const float* in, const int32_t* rows, int64_t m, int64_t dim, float* out,
                        cudaStream_t stream);

}  // namespace loopserve::cuda

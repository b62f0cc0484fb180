// Row-wise kernels (see elementwise.h). Memory-bound and simple on purpose:
// the per-element math lives in scalar_math.h, shared with the CPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/common/scalar_math.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/plans/launch_shape.h"

namespace loopserve::cuda {
namespace {

__device__ float LoadAsF32(const void* base, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kF32:
      return static_cast<const float*>(base)[i];
    case DType::kBF16:
      return Bf16ToF32(static_cast<const uint16_t*>(base)[i]);
    case DType::kF16:
      return F16ToF32(static_cast<const uint16_t*>(base)[i]);
  }
  return 0.0f;
}

__global__ void EmbeddingKernel(const void* table, DType dtype, const int32_t* ids, int64_t n,
                                int64_t dim, float* out) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= n * dim) return;
  const int64_t row = i / dim, col = i % dim;
  out[i] = LoadAsF32(table, dtype, int64_t{ids[row]} * dim + col);
}

// One block per row: the sum of squares in double (as the CPU), then the
// scaled row with optional modulation.
__global__ void RmsNormKernel(const float* x, int64_t dim, const float* w, float eps,
                              const float* scale, const float* shift, int64_t ld, float* out) {
  __shared__ double partial[1024];
  const int64_t row = blockIdx.x;
  const float* xi = x + row * dim;
  double ss = 0;
  for (int64_t k = threadIdx.x; k < dim; k += blockDim.x) ss += static_cast<double>(xi[k]) * xi[k];
  partial[threadIdx.x] = ss;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  const float inv = RmsInvScale(partial[0], dim, eps);
  float* oi = out + row * dim;
  for (int64_t k = threadIdx.x; k < dim; k += blockDim.x) {
    float v = xi[k] * inv * w[k];
    if (scale != nullptr) v = AdaLnModulate(v, scale[row * ld + k], shift[row * ld + k]);
    oi[k] = v;
  }
}

// One thread per (row, head, pair).
__global__ void RopeKernel(float* x, int64_t n, int heads, int head_dim, const int32_t* positions,
                           float theta) {
  const int half = head_dim / 2;
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= n * heads * half) return;
  const int64_t row = i / (int64_t{heads} * half);
  const int j = static_cast<int>(i % half);
  float* head = x + (i / half) * head_dim;
  RopePair(&head[j], &head[j + half], j, head_dim, positions[row], theta);
}

__global__ void SiluMulKernel(const float* gate, const float* up, int64_t count, float* out) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i < count) out[i] = ::loopserve::SiluMul(gate[i], up[i]);
}

__global__ void ResidualAddKernel(float* acc, const float* delta, int64_t n, int64_t dim,
                                  const float* gain, int64_t ld) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= n * dim) return;
  if (gain == nullptr) {
    acc[i] += delta[i];
  } else {
    acc[i] = GatedResidual(acc[i], delta[i], gain[(i / dim) * ld + i % dim]);
  }
}

__global__ void AddRowSiluKernel(float* x, int64_t count, int64_t width, const float* row) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i < count) x[i] = Silu(x[i] + row[i % width]);
}

__global__ void AddBiasKernel(float* x, int64_t count, int64_t width, const float* bias) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i < count) x[i] += bias[i % width];
}

__global__ void AddInPlaceKernel(float* x, const float* y, int64_t count) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i < count) x[i] += y[i];
}

__global__ void SigmoidBiasKernel(float* x, int64_t count, const float* bias) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i < count) x[i] = Sigmoid(x[i] + bias[0]);
}

__global__ void ConvertKernel(const float* in, int64_t count, DType to, uint16_t* out) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= count) return;
  if (to == DType::kBF16) {
    out[i] = F32ToBf16(in[i]);
  } else {
    out[i] = __half_as_ushort(__float2half_rn(in[i]));
  }
}

__global__ void GatherRowsKernel(const float* in, const int32_t* rows, int64_t m, int64_t dim,
                                 float* out) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i < m * dim) out[i] = in[int64_t{rows[i / dim]} * dim + i % dim];
}

__global__ void ScatterRowsKernel(const float* in, const int32_t* rows, int64_t m, int64_t dim,
                                  float* out) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i < m * dim) out[int64_t{rows[i / dim]} * dim + i % dim] = in[i];
}

// Launches over `count` elements; an empty launch is not an error.
template <typename Kernel, typename... Args>
cudaError_t LaunchElementwise(int64_t count, cudaStream_t stream, Kernel kernel, Args... args) {
  if (count <= 0) return cudaSuccess;
  const LaunchShape shape = ElementwiseShape(count);
  if (!FitsGrid(shape)) return cudaErrorInvalidConfiguration;
  kernel<<<static_cast<unsigned>(shape.blocks), shape.threads, 0, stream>>>(args...);
  return cudaGetLastError();
}

}  // namespace

cudaError_t Embedding(const void* table, DType dtype, const int32_t* ids, int64_t n, int64_t dim,
                      float* out, cudaStream_t stream) {
  return LaunchElementwise(n * dim, stream, EmbeddingKernel, table, dtype, ids, n, dim, out);
}

cudaError_t RmsNorm(const float* x, int64_t n, int64_t dim, const float* w, float eps,
                    const float* scale, const float* shift, int64_t ld, float* out,
                    cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  const LaunchShape shape = RowShape(n, dim);
  if (!FitsGrid(shape)) return cudaErrorInvalidConfiguration;
  RmsNormKernel<<<static_cast<unsigned>(shape.blocks), shape.threads, 0, stream>>>(
      x, dim, w, eps, scale, shift, ld, out);
  return cudaGetLastError();
}

cudaError_t Rope(float* x, int64_t n, int heads, int head_dim, const int32_t* positions,
                 float theta, cudaStream_t stream) {
  return LaunchElementwise(n * heads * (head_dim / 2), stream, RopeKernel, x, n, heads, head_dim,
                           positions, theta);
}

cudaError_t SiluMul(const float* gate, const float* up, int64_t count, float* out,
                    cudaStream_t stream) {
  return LaunchElementwise(count, stream, SiluMulKernel, gate, up, count, out);
}

cudaError_t ResidualAdd(float* acc, const float* delta, int64_t n, int64_t dim, const float* gain,
                        int64_t ld, cudaStream_t stream) {
  return LaunchElementwise(n * dim, stream, ResidualAddKernel, acc, delta, n, dim, gain, ld);
}

cudaError_t AddRowSilu(float* x, int64_t n, int64_t width, const float* row, cudaStream_t stream) {
  return LaunchElementwise(n * width, stream, AddRowSiluKernel, x, n * width, width, row);
}

cudaError_t AddBias(float* x, int64_t n, int64_t width, const float* bias, cudaStream_t stream) {
  return LaunchElementwise(n * width, stream, AddBiasKernel, x, n * width, width, bias);
}

cudaError_t AddInPlace(float* x, const float* y, int64_t count, cudaStream_t stream) {
  return LaunchElementwise(count, stream, AddInPlaceKernel, x, y, count);
}

cudaError_t SigmoidBias(float* x, int64_t count, const float* bias, cudaStream_t stream) {
  return LaunchElementwise(count, stream, SigmoidBiasKernel, x, count, bias);
}

cudaError_t ConvertF32(const float* in, int64_t count, DType to, void* out, cudaStream_t stream) {
  if (to == DType::kF32) return cudaErrorInvalidValue;
  return LaunchElementwise(count, stream, ConvertKernel, in, count, to,
                           static_cast<uint16_t*>(out));
}

cudaError_t GatherRows(const float* in, const int32_t* rows, int64_t m, int64_t dim, float* out,
                       cudaStream_t stream) {
  return LaunchElementwise(m * dim, stream, GatherRowsKernel, in, rows, m, dim, out);
}

cudaError_t ScatterRows(const float* in, const int32_t* rows, int64_t m, int64_t dim, float* out,
                        cudaStream_t stream) {
  return LaunchElementwise(m * dim, stream, ScatterRowsKernel, in, rows, m, dim, out);
}

}  // namespace loopserve::cuda

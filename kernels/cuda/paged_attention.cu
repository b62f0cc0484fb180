// Paged attention (see paged_attention.h). One block per (row, head); each
// warp walks every kWarps-th key with an online softmax, lanes owning
// head_dim/32 output elements, then the warps' partial states are merged.
// Simple rather than fast: decode is bound by reading K/V once.
#include <cfloat>

#include "kernels/cuda/paged_attention.h"
#include "kernels/cuda/plans/launch_shape.h"

namespace loopserve::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kPerLane = kMaxAttentionHeadDim / 32;

__device__ float* KvRow(const DeviceKvPool& pool, int32_t block, int instance, int kv, int slot) {
  const int64_t per_block = int64_t{pool.num_instances} * 2 * pool.block_size * pool.kv_dim;
  return pool.base + block * per_block +
         ((int64_t{instance} * 2 + kv) * pool.block_size + slot) * pool.kv_dim;
}

__device__ float* KvRowAt(const DeviceKvPool& pool, const DeviceRows& rows, int64_t row,
                          int instance, int kv, int32_t pos) {
  const int32_t* table = rows.tables + int64_t{rows.row_table[row]} * rows.stride;
  return KvRow(pool, table[pos / pool.block_size], instance, kv, pos % pool.block_size);
}

__global__ void WriteKvKernel(DeviceKvPool pool, int instance, DeviceRows rows, const float* k,
                              const float* v) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= rows.n * pool.kv_dim) return;
  const int64_t row = i / pool.kv_dim;
  const int col = static_cast<int>(i % pool.kv_dim);
  const int32_t pos = rows.positions[row];
  KvRowAt(pool, rows, row, instance, 0, pos)[col] = k[i];
  KvRowAt(pool, rows, row, instance, 1, pos)[col] = v[i];
}

__global__ void CopyKvKernel(DeviceKvPool pool, int from, int to, DeviceRows rows) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= rows.n * pool.kv_dim) return;
  const int64_t row = i / pool.kv_dim;
  const int col = static_cast<int>(i % pool.kv_dim);
  const int32_t pos = rows.positions[row];
  for (int kv = 0; kv < 2; ++kv) {
    KvRowAt(pool, rows, row, to, kv, pos)[col] = KvRowAt(pool, rows, row, from, kv, pos)[col];
  }
}

__device__ float WarpSum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__global__ void AttentionKernel(DeviceKvPool pool, int instance, int num_heads, int num_kv_heads,
                                int head_dim, const float* q, DeviceRows rows, const float* self_k,
                                const float* self_v, float* out) {
  const int64_t row = blockIdx.x;
  const int head = blockIdx.y;
  const int kv_head = head / (num_heads / num_kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int32_t pos = rows.positions[row];
  const float scale = 1.0f / sqrtf(static_cast<float>(head_dim));  // as the CPU kernel
  const float* qh = q + (row * num_heads + head) * head_dim;

  float qv[kPerLane], acc[kPerLane];
  for (int e = 0; e < kPerLane; ++e) {
    const int c = lane + 32 * e;
    qv[e] = c < head_dim ? qh[c] : 0.0f;
    acc[e] = 0.0f;
  }
  float m = -FLT_MAX, l = 0.0f;
  for (int32_t p = warp; p <= pos; p += kWarps) {
    const float* k;
    const float* v;
    if (self_k != nullptr && p == pos) {
      k = self_k + row * pool.kv_dim + kv_head * head_dim;
      v = self_v + row * pool.kv_dim + kv_head * head_dim;
    } else {
      k = KvRowAt(pool, rows, row, instance, 0, p) + kv_head * head_dim;
      v = KvRowAt(pool, rows, row, instance, 1, p) + kv_head * head_dim;
    }
    float dot = 0.0f;
    for (int e = 0; e < kPerLane; ++e) {
      const int c = lane + 32 * e;
      if (c < head_dim) dot += qv[e] * k[c];
    }
    const float s = WarpSum(dot) * scale;
    const float m_new = fmaxf(m, s);
    const float correction = expf(m - m_new);
    const float w = expf(s - m_new);
    l = l * correction + w;
    for (int e = 0; e < kPerLane; ++e) {
      const int c = lane + 32 * e;
      acc[e] = acc[e] * correction + (c < head_dim ? w * v[c] : 0.0f);
    }
    m = m_new;
  }
  // Merge the warps' (m, l, acc) states.
  __shared__ float sm_m[kWarps], sm_l[kWarps];
  __shared__ float sm_acc[kWarps][kMaxAttentionHeadDim];
  if (lane == 0) {
    sm_m[warp] = m;
    sm_l[warp] = l;
  }
  for (int e = 0; e < kPerLane; ++e) {
    const int c = lane + 32 * e;
    if (c < head_dim) sm_acc[warp][c] = acc[e];
  }
  __syncthreads();
  if (warp != 0) return;
  float m_all = -FLT_MAX;
  for (int w = 0; w < kWarps; ++w) {
    if (sm_l[w] > 0.0f) m_all = fmaxf(m_all, sm_m[w]);
  }
  float l_all = 0.0f;
  float factor[kWarps];
  for (int w = 0; w < kWarps; ++w) {
    factor[w] = sm_l[w] > 0.0f ? expf(sm_m[w] - m_all) : 0.0f;
    l_all += sm_l[w] * factor[w];
  }
  float* oh = out + (row * num_heads + head) * head_dim;
  for (int c = lane; c < head_dim; c += 32) {
    float sum = 0.0f;
    for (int w = 0; w < kWarps; ++w) sum += sm_acc[w][c] * factor[w];
    oh[c] = sum / l_all;
  }
}

}  // namespace

cudaError_t WriteKv(const DeviceKvPool& pool, int instance, const DeviceRows& rows, const float* k,
                    const float* v, cudaStream_t stream) {
  const LaunchShape shape = ElementwiseShape(rows.n * pool.kv_dim);
  if (shape.blocks == 0) return cudaSuccess;
  if (!FitsGrid(shape)) return cudaErrorInvalidConfiguration;
  WriteKvKernel<<<static_cast<unsigned>(shape.blocks), shape.threads, 0, stream>>>(pool, instance,
                                                                                   rows, k, v);
  return cudaGetLastError();
}

cudaError_t CopyKvInstance(const DeviceKvPool& pool, int from, int to, const DeviceRows& rows,
                           cudaStream_t stream) {
  const LaunchShape shape = ElementwiseShape(rows.n * pool.kv_dim);
  if (shape.blocks == 0) return cudaSuccess;
  if (!FitsGrid(shape)) return cudaErrorInvalidConfiguration;
  CopyKvKernel<<<static_cast<unsigned>(shape.blocks), shape.threads, 0, stream>>>(pool, from, to,
                                                                                  rows);
  return cudaGetLastError();
}

cudaError_t PagedAttention(const DeviceKvPool& pool, int instance, int num_heads, int num_kv_heads,
                           int head_dim, const float* q, const DeviceRows& rows,
                           const float* self_k, const float* self_v, float* out,
                           cudaStream_t stream) {
  if (rows.n == 0) return cudaSuccess;
  if (head_dim > kMaxAttentionHeadDim || num_kv_heads <= 0 || num_heads % num_kv_heads != 0 ||
      rows.n > kMaxGridX || num_heads > 65535) {
    return cudaErrorInvalidValue;
  }
  const dim3 grid(static_cast<unsigned>(rows.n), static_cast<unsigned>(num_heads));
  AttentionKernel<<<grid, kWarps * 32, 0, stream>>>(pool, instance, num_heads, num_kv_heads,
                                                    head_dim, q, rows, self_k, self_v, out);
  return cudaGetLastError();
}

}  // namespace loopserve::cuda

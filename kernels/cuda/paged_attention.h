// Paged KV on the device: the pool has the CPU pool's layout
//   pool [num_blocks][num_instances][2 (K,V)][block_size][kv_dim]   (f32)
// and rows find their block table through a BlockTablePlan
// (tables (num_tables, stride), row_table (n)). Causal GQA attention for
// decode tokens and prefill chunks alike, K/V writes and instance copies.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace loopserve::cuda {

struct DeviceKvPool {
  float* base = nullptr;
  int num_instances = 0;
  int block_size = 0;
  int kv_dim = 0;
};

// Where each of n rows sits: its position and its block table.
struct DeviceRows {
  int64_t n = 0;
  const int32_t* positions = nullptr;  // (n)
  const int32_t* tables = nullptr;     // (num_tables, stride)
  const int32_t* row_table = nullptr;  // (n)
  int32_t stride = 0;
};

// Largest head_dim the attention kernel supports (8 floats per lane).
inline constexpr int kMaxAttentionHeadDim = 256;

// k, v (n, kv_dim) -> the pool at (instance, positions[i]) of row i.
cudaError_t WriteKv(const DeviceKvPool& pool, int instance, const DeviceRows& rows, const float* k,
                    const float* v, cudaStream_t stream);

// K and V of instance `from` -> instance `to` at each row's position
// (kv_fill = reuse).
cudaError_t CopyKvInstance(const DeviceKvPool& pool, int from, int to, const DeviceRows& rows,
                           cudaStream_t stream);

// q (n, H*d) with RoPE applied -> out (n, H*d): row i attends positions
// 0..positions[i] of `instance`; head h reads kv head h / (H / Hkv). With
// self_k/self_v (n, kv_dim) set, the key/value at positions[i] comes from
// row i of them instead of the pool (the exit-head probe).
cudaError_t PagedAttention(const DeviceKvPool& pool, int instance, int num_heads, int num_kv_heads,
                           int head_dim, const float* q, const DeviceRows& rows,
                           const float* self_k, const float* self_v, float* out,
                           cudaStream_t stream);

}  // namespace loopserve::cuda

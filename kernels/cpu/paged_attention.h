// Causal multi-head attention (GQA) over a paged KV pool. The pool holds,
// per block, K and V of every layer instance:
//   pool [num_blocks][num_instances][2 (K,V)][block_size][kv_dim]   (f32)
// A sequence's block table maps position p to block table[p / block_size],
// slot p % block_size.
#pragma once

#include <cstdint>

namespace loopserve {

class ThreadPool;

struct PagedKvView {
  float* base = nullptr;
  int num_instances = 0;
  int block_size = 0;
  int kv_dim = 0;  // Hkv * head_dim

  // Pointer to the K (kv = 0) or V (kv = 1) row of `slot` in `block`.
  float* Row(int32_t block, int instance, int kv, int slot) const {
    int64_t per_block = int64_t{num_instances} * 2 * block_size * kv_dim;
    return base + block * per_block +
           ((int64_t{instance} * 2 + kv) * block_size + slot) * kv_dim;
  }
  float* RowAt(const int32_t* block_table, int instance, int kv, int64_t pos) const {
    return Row(block_table[pos / block_size], instance, kv, static_cast<int>(pos % block_size));
  }
};

struct AttentionShape {
  int num_heads = 0;     // H
  int num_kv_heads = 0;  // Hkv; head h reads kv head h / (H / Hkv)
  int head_dim = 0;      // d
};

// For each query row i: attend positions 0..positions[i] of `instance` in the
// sequence whose block table is block_tables[i].
//   q (n, H*d) with RoPE applied -> out (n, H*d)
// When self_k/self_v are non-null, the key/value at position positions[i]
// is taken from row i of self_k/self_v (n, kv_dim) instead of the pool: a
// probe that sees a token's own fresh K/V without writing it (the exit head
// at a boundary where the token may go on).
void PagedAttention(const PagedKvView& kv, int instance, const AttentionShape& shape,
                    const float* q, int64_t n, const int32_t* positions,
                    const int32_t* const* block_tables, const float* self_k,
                    const float* self_v, float* out, ThreadPool* pool);

// PagedAttention on the portable (non-SIMD) path whatever the CPU; the
// tests run it next to the dispatched one.
void PagedAttentionPortable(const PagedKvView& kv, int instance, const AttentionShape& shape,
                            const float* q, int64_t n, const int32_t* positions,
                            const int32_t* const* block_tables, const float* self_k,
                            const float* self_v, float* out, ThreadPool* pool);

}  // namespace loopserve

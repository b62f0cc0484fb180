// Prefill attention on a block of consecutive query rows of one sequence
// (AVX-512): the K rows of a 16-key tile are transposed once and reused by
// every query head of every row in the block, so the scores of 16 keys take
// d broadcast-FMAs instead of 16 dot products with horizontal sums.
// Bit-identical to the AVX2 row path of paged_attention.cc (same summation
// order), which decode keeps using.
#pragma once

#include <cstdint>

#include "kernels/cpu/paged_attention.h"

namespace loopserve::internal {

// Rows per block: 16 rows x 4 heads of a GQA group share each K/V tile.
inline constexpr int kAttentionRowBlock = 16;

// Whether AttendRowBlock can run here: AVX-512F and head_dim % 16 == 0.
bool AttendRowBlockSupported(int head_dim);

// Query rows i0 .. i0+nb-1 (nb <= kAttentionRowBlock) at positions
// p0 .. p0+nb-1 of the sequence with block table `table`, KV head g: each row
// attends keys 0..its position (all already in the pool).
//   q (n, H*d) -> out (n, H*d), heads [g*group, (g+1)*group) of the nb rows
// `softmax` is the row path's softmax (x (len) in place), for identical
// results.
void AttendRowBlock(const PagedKvView& kv, int instance, const AttentionShape& shape,
                    const float* q, int64_t i0, int nb, int32_t p0, const int32_t* table, int g,
                    void (*softmax)(float* x, int64_t len), float* out);

}  // namespace loopserve::internal

// Exit statistics on the device (MODEL_SPEC "Early exit"): per-row max
// prob, margin, entropy and log-sum-exp of exit-head logits, KL against the
// previous boundary's logits and cosine of hidden states, so only a few
// numbers per token, never the logits, go back to the host.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/scalar_math.h"

namespace loopserve::cuda {

// logits (n, V) -> stats (n)
cudaError_t LogitRowStats(const float* logits, int64_t n, int64_t vocab, RowExitStats* stats,
                          cudaStream_t stream);

// kl (n): KL(softmax p_i ‖ softmax q_{q_rows[i]}) with p (n, V) and its
// stats, q_base (*, V) and q_lse (*) indexed by q_rows (n).
cudaError_t KlRows(const float* p, const RowExitStats* p_stats, const float* q_base,
                   const double* q_lse, const int32_t* q_rows, int64_t n, int64_t vocab, double* kl,
                   cudaStream_t stream);

// cosine (n): cos(a_i, b_{b_rows[i]}) with a (n, dim), b_base (*, dim).
cudaError_t CosineRows(const float* a, const float* b_base, const int32_t* b_rows, int64_t n,
                       int64_t dim, double* cosine, cudaStream_t stream);

}  // namespace loopserve::cuda

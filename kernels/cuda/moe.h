// MoE on the device: router scores + top-k (scalar_math.h's SelectTopK,
// ties to the lower index) and the weighted combine of the expert outputs,
// which the host's ExpertPlan grouped per expert.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace loopserve::cuda {

// Most experts the router kernel handles (scores live in registers/local).
inline constexpr int kMaxRouterExperts = 256;

// logits (n, E) -> ids (n, k), weights (n, k), as kernels/cpu RouteTopK.
cudaError_t RouteTopK(const float* logits, int64_t n, int num_experts, int k, bool softmax,
                      bool norm_topk_prob, float routed_scaling_factor, int32_t* ids,
                      float* weights, cudaStream_t stream);

// out (n, dim) = Σ_j weights[t, j] * expert_out[inverse[t*k + j]], summed
// in ascending permuted row (= expert) order, as the CPU combine.
cudaError_t CombineExperts(const float* expert_out, const int32_t* inverse, const float* weights,
                           int64_t n, int k, int64_t dim, float* out, cudaStream_t stream);

}  // namespace loopserve::cuda

// Router top-k and expert combine (see moe.h).
#include "kernels/common/scalar_math.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/plans/launch_shape.h"

namespace loopserve::cuda {
namespace {

constexpr int kMaxTopK = 16;

// One thread per token: E and k are small.
__global__ void RouteTopKKernel(const float* logits, int64_t n, int num_experts, int k,
                                bool softmax, bool norm, float scaling, int32_t* ids,
                                float* weights) {
  const int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (t >= n) return;
  float s[kMaxRouterExperts];
  for (int e = 0; e < num_experts; ++e) s[e] = logits[t * num_experts + e];
  RouterScoresInPlace(s, num_experts, softmax);
  SelectTopK(s, num_experts, k, ids + t * k);
  RouterWeights(s, ids + t * k, k, norm, scaling, weights + t * k);
}

__global__ void CombineKernel(const float* expert_out, const int32_t* inverse, const float* weights,
                              int64_t n, int k, int64_t dim, float* out) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= n * dim) return;
  const int64_t t = i / dim, c = i % dim;
  // Insertion-sort the k rows so the sum runs in expert order.
  int32_t rows[kMaxTopK];
  int order[kMaxTopK];
  for (int j = 0; j < k; ++j) {
    int32_t r = inverse[t * k + j];
    int o = j, p = j;
    while (p > 0 && rows[p - 1] > r) {
      rows[p] = rows[p - 1];
      order[p] = order[p - 1];
      --p;
    }
    rows[p] = r;
    order[p] = o;
  }
  float acc = 0.0f;
  for (int j = 0; j < k; ++j)
    acc += weights[t * k + order[j]] * expert_out[int64_t{rows[j]} * dim + c];
  out[i] = acc;
}

}  // namespace

cudaError_t RouteTopK(const float* logits, int64_t n, int num_experts, int k, bool softmax,
                      bool norm_topk_prob, float routed_scaling_factor, int32_t* ids,
                      float* weights, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (num_experts > kMaxRouterExperts || k > num_experts || k < 1) return cudaErrorInvalidValue;
  const LaunchShape shape = ElementwiseShape(n, 128);
  if (!FitsGrid(shape)) return cudaErrorInvalidConfiguration;
  RouteTopKKernel<<<static_cast<unsigned>(shape.blocks), shape.threads, 0, stream>>>(
      logits, n, num_experts, k, softmax, norm_topk_prob, routed_scaling_factor, ids, weights);
  return cudaGetLastError();
}

cudaError_t CombineExperts(const float* expert_out, const int32_t* inverse, const float* weights,
                           int64_t n, int k, int64_t dim, float* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (k > kMaxTopK) return cudaErrorInvalidValue;
  const LaunchShape shape = ElementwiseShape(n * dim);
  if (!FitsGrid(shape)) return cudaErrorInvalidConfiguration;
  CombineKernel<<<static_cast<unsigned>(shape.blocks), shape.threads, 0, stream>>>(
      expert_out, inverse, weights, n, k, dim, out);
  return cudaGetLastError();
}

}  // namespace loopserve::cuda

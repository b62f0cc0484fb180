// Device sampling (see sampling.h). The sums run sequentially in one thread
// per row, in the CPU sampler's order, so the drawn token is the same for
// the same uniform: simple and exact rather than fast (a sampled row costs
// a few passes over V).
#include <algorithm>
#include <climits>
#include <cub/device/device_segmented_radix_sort.cuh>

#include "kernels/cuda/plans/launch_shape.h"
#include "kernels/cuda/sampling.h"

namespace loopserve::cuda {
namespace {

struct Layout {
  size_t keys = 0, ids_in = 0, ids_out = 0, offsets = 0, temp = 0, temp_bytes = 0, total = 0;
};

size_t AlignUp(size_t x) { return (x + 255) & ~size_t{255}; }

cudaError_t Plan(int64_t n, int64_t vocab, Layout* layout) {
  if (n < 0 || vocab < 1 || n * vocab > INT_MAX) return cudaErrorInvalidValue;
  const size_t items = static_cast<size_t>(n * vocab);
  size_t temp_bytes = 0;
  const cudaError_t err = cub::DeviceSegmentedRadixSort::SortPairsDescending(
      nullptr, temp_bytes, static_cast<const float*>(nullptr), static_cast<float*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), static_cast<int>(items),
      static_cast<int>(n), static_cast<const int32_t*>(nullptr),
      static_cast<const int32_t*>(nullptr));
  if (err != cudaSuccess) return err;
  layout->keys = 0;
  layout->ids_in = AlignUp(layout->keys + items * sizeof(float));
  layout->ids_out = AlignUp(layout->ids_in + items * sizeof(int32_t));
  layout->offsets = AlignUp(layout->ids_out + items * sizeof(int32_t));
  layout->temp = AlignUp(layout->offsets + (n + 1) * sizeof(int32_t));
  layout->temp_bytes = temp_bytes;
  layout->total = layout->temp + temp_bytes;
  return cudaSuccess;
}

__global__ void FillIdsKernel(int32_t* ids, int32_t* offsets, int64_t n, int64_t vocab) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i < n * vocab) ids[i] = static_cast<int32_t>(i % vocab);
  if (i <= n) offsets[i] = static_cast<int32_t>(i * vocab);
}

// exp((l - max) / T) as the CPU computes it: f32 difference and scale, then
// exp rounded to f32 (glibc's expf is correctly rounded in all but rare
// cases; exp in double rounded to float matches it there).
__device__ float Weight(float logit, float max_logit, float inv_t) {
  return static_cast<float>(exp(static_cast<double>((logit - max_logit) * inv_t)));
}

__device__ int32_t SampleFull(const float* l, int64_t vocab, float mx, float inv_t, double u,
                              int32_t argmax) {
  double total = 0;
  for (int64_t i = 0; i < vocab; ++i) total += Weight(l[i], mx, inv_t);
  const double target = u * total;
  double cum = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    cum += Weight(l[i], mx, inv_t);
    if (cum > target) return static_cast<int32_t>(i);
  }
  return argmax;
}

__device__ int32_t SampleTruncated(const float* l, const int32_t* order, int64_t vocab, float mx,
                                   float inv_t, const SamplingRow& p) {
  const bool has_top_k = p.top_k > 0 && p.top_k < vocab;
  const int64_t k = has_top_k ? p.top_k : vocab;
  double mass = 0;
  if (has_top_k) {
    for (int64_t j = 0; j < k; ++j) mass += Weight(l[order[j]], mx, inv_t);
  } else {
    for (int64_t i = 0; i < vocab; ++i) mass += Weight(l[i], mx, inv_t);
  }
  int64_t keep = k;
  double kept_mass = mass;
  if (p.top_p < 1) {
    const double goal = static_cast<double>(p.top_p) * mass;
    double cum = 0;
    int64_t n = 0;
    bool reached = false;
    for (; n < k && !reached; ++n) {
      cum += Weight(l[order[n]], mx, inv_t);
      reached = cum >= goal;
    }
    keep = n;
    kept_mass = cum;
  }
  const double target = p.uniform * kept_mass;
  double cum = 0;
  for (int64_t j = 0; j < keep; ++j) {
    cum += Weight(l[order[j]], mx, inv_t);
    if (cum > target) return order[j];
  }
  return order[0];
}

__global__ void SampleKernel(const float* logits, int64_t vocab, const SamplingRow* rows,
                             const int32_t* sorted_ids, int32_t* tokens, float* logprobs) {
  const int64_t r = blockIdx.x;  // one row per block; thread 0 keeps the CPU's order
  if (threadIdx.x != 0) return;
  const float* l = logits + r * vocab;
  const SamplingRow p = rows[r];
  int32_t argmax = 0;
  for (int64_t i = 1; i < vocab; ++i) {
    if (l[i] > l[argmax]) argmax = static_cast<int32_t>(i);
  }
  const float mx = l[argmax];
  const bool truncated = (p.top_k > 0 && p.top_k < vocab) || p.top_p < 1;
  int32_t token = argmax;
  if (p.temperature != 0) {
    const float inv_t = 1.0f / p.temperature;
    token = truncated ? SampleTruncated(l, sorted_ids + r * vocab, vocab, mx, inv_t, p)
                      : SampleFull(l, vocab, mx, inv_t, p.uniform, argmax);
  }
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += exp(static_cast<double>(l[i] - mx));
  const double lse = static_cast<double>(mx) + log(sum);
  tokens[r] = token;
  logprobs[r] = static_cast<float>(l[token] - lse);
}

}  // namespace

cudaError_t SampleRowsWorkspaceBytes(int64_t n, int64_t vocab, size_t* bytes) {
  Layout layout;
  const cudaError_t err = Plan(n, vocab, &layout);
  *bytes = layout.total;
  return err;
}

cudaError_t SampleRows(const float* logits, int64_t n, int64_t vocab, const SamplingRow* rows,
                       void* workspace, size_t workspace_bytes, int32_t* tokens, float* logprobs,
                       cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  Layout layout;
  if (cudaError_t err = Plan(n, vocab, &layout); err != cudaSuccess) return err;
  if (workspace_bytes < layout.total) return cudaErrorInvalidValue;
  char* base = static_cast<char*>(workspace);
  float* keys = reinterpret_cast<float*>(base + layout.keys);
  int32_t* ids_in = reinterpret_cast<int32_t*>(base + layout.ids_in);
  int32_t* ids_out = reinterpret_cast<int32_t*>(base + layout.ids_out);
  int32_t* offsets = reinterpret_cast<int32_t*>(base + layout.offsets);
  const LaunchShape fill = ElementwiseShape(std::max<int64_t>(n * vocab, n + 1));
  FillIdsKernel<<<static_cast<unsigned>(fill.blocks), fill.threads, 0, stream>>>(ids_in, offsets, n,
                                                                                 vocab);
  if (cudaError_t err = cudaGetLastError(); err != cudaSuccess) return err;
  size_t temp_bytes = layout.temp_bytes;
  if (cudaError_t err = cub::DeviceSegmentedRadixSort::SortPairsDescending(
          base + layout.temp, temp_bytes, logits, keys, ids_in, ids_out,
          static_cast<int>(n * vocab), static_cast<int>(n), offsets, offsets + 1, 0,
          static_cast<int>(sizeof(float) * 8), stream);
      err != cudaSuccess) {
    return err;
  }
  if (n > kMaxGridX) return cudaErrorInvalidValue;
  SampleKernel<<<static_cast<unsigned>(n), 32, 0, stream>>>(logits, vocab, rows, ids_out, tokens,
                                                            logprobs);
  return cudaGetLastError();
}

}  // namespace loopserve::cuda

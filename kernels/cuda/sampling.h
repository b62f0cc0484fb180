// Next-token sampling on the device for rows of logits: greedy, temperature,
// top-k and top-p, the CPU Sampler's algorithm (engine/sampler.cc) step for
// step, drawing with one uniform per row that the host takes from the
// sequence's seeded RNG, so a sequence samples the same on either backend.
// The candidate order comes from a CUB segmented radix sort (stable
// descending: ties to the lower id). Not yet wired into Engine::Step, which
// samples on the host from the copied logits row (docs/cuda.md).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace loopserve::cuda {

struct SamplingRow {
  float temperature = 0;  // 0 = greedy
  int32_t top_k = 0;      // 0 = off
  float top_p = 1;        // 1 = off
  double uniform = 0;     // in [0, 1): the row's next draw of its RNG
};

// Bytes of the workspace SampleRows needs for n rows of `vocab`.
cudaError_t SampleRowsWorkspaceBytes(int64_t n, int64_t vocab, size_t* bytes);

// logits (n, V), rows (n) on the device -> tokens (n) and their model
// log-probabilities (n) (log-softmax at temperature 1, as the CPU sampler).
cudaError_t SampleRows(const float* logits, int64_t n, int64_t vocab, const SamplingRow* rows,
                       void* workspace, size_t workspace_bytes, int32_t* tokens, float* logprobs,
                       cudaStream_t stream);

}  // namespace loopserve::cuda

// The exit head at a loop boundary (MODEL_SPEC: z_t = LMHead(norm(Coda(h_t)))).
// Run as a probe it leaves the pool untouched and keeps the coda K/V rows it
// computed, so that the tokens which do exit can commit them afterwards
// without running the coda twice.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/layer_forward.h"
#include "engine/model_weights.h"
#include "engine/scratch_buffer.h"

namespace loopserve {

class ExitHead {
 public:
  ExitHead(const ModelConfig& config, const ModelWeights& weights, const PagedKvView& kv,
           LayerForward* layers, ThreadPool* pool);

  // h (n, D) -> logits (n, V) for the rows in `logit_rows` (indices into the
  // n rows; null = all rows, in order). Coda K/V go to the pool unless
  // `probe`, in which case they are kept for CommitProbe. `router_trace`
  // receives per-coda-layer router choices when non-null.
  void Run(const float* h, const LayerRows& rows, bool probe, const std::vector<int>* logit_rows,
           float* logits, std::vector<std::vector<int32_t>>* router_trace);

  // Writes the coda K/V of probe row `row` (of the last probe Run) into the
  // pool at that row's position.
  void CommitProbe(int64_t row, const LayerRows& rows);

  // The final RMSNorm of h (n, D), as the exit head and the gate see it.
  void FinalNorm(const float* h, int64_t n, float* out) const;

 private:
  const ModelConfig& config_;
  const ModelWeights& weights_;
  PagedKvView kv_;
  LayerForward* layers_;
  ThreadPool* pool_;
  ScratchBuffer x_, normed_, picked_;
  std::vector<std::vector<float>> probe_k_, probe_v_;  // per coda layer (n, kv_dim)
};

}  // namespace loopserve

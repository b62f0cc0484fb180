// One transformer layer of the looped-MoE block (MODEL_SPEC "Block"), with
// optional IterAdaLN modulation, run on a set of token rows that each carry
// their own position and block table. K/V go to the paged pool or, for a
// probe, to caller-owned rows that attention reads in place of the pool.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/model_config.h"
#include "engine/model_weights.h"
#include "engine/scratch_buffer.h"
#include "kernels/cpu/paged_attention.h"

namespace loopserve {

class ThreadPool;

// The token rows a layer runs on.
struct LayerRows {
  int64_t n = 0;
  const int32_t* positions = nullptr;           // (n)
  const int32_t* const* block_tables = nullptr;  // (n)
};

// Where a layer's K/V rows go. With probe_k/probe_v set, K/V are written
// there (n, kv_dim) and not into the pool.
struct KvTarget {
  int instance = 0;
  float* probe_k = nullptr;
  float* probe_v = nullptr;
  bool is_probe() const { return probe_k != nullptr; }
};

class LayerForward {
 public:
  LayerForward(const ModelConfig& config, const PagedKvView& kv, ThreadPool* pool);

  // x (n, D) in place: x <- Block(x). `modulation` (n, 6D) is IterAdaLN's
  // [sa, ca, ga, sf, cf, gf] or null. `router_trace`, when set, receives the
  // selected experts (n, k) of an MoE layer.
  void Run(const LayerWeights& w, const KvTarget& kv, const float* modulation,
           const LayerRows& rows, float* x, std::vector<int32_t>* router_trace);

  // IterAdaLN of recurrent layer w at loop `loop` from block input x (n, D):
  // out (n, 6D) = up · silu(down · x + iter_embed[loop]) + bias.
  void Modulation(const IterAdaLnWeights& w, int loop, const float* x, int64_t n, float* out);

  // K/V rows only (kv_fill = propagate): from the block input x (n, D), with
  // optional modulation, write k, v (n, kv_dim) with qk-norm and RoPE applied.
  void KeyValue(const LayerWeights& w, const float* modulation, const LayerRows& rows,
                const float* x, float* k, float* v);

 private:
  void Attention(const LayerWeights& w, const KvTarget& kv, const float* modulation,
                 const LayerRows& rows, const float* x, float* out);
  void Ffn(const LayerWeights& w, const float* x, int64_t n, float* out,
           std::vector<int32_t>* router_trace);
  void Qkv(const LayerWeights& w, const float* xn, const LayerRows& rows, float* q, float* k,
           float* v);

  const ModelConfig& config_;
  PagedKvView kv_;
  ThreadPool* pool_;
  ScratchBuffer norm_, q_, k_, v_, attn_, delta_, hidden_, ffn_a_, ffn_b_, ffn_out_, adaln_;
  ScratchBuffer router_logits_, gathered_, expert_out_;
  std::vector<int32_t> expert_ids_;
  std::vector<float> expert_weights_;
};

}  // namespace loopserve

#include "engine/layer_forward.h"

#include <cstring>

#include "kernels/common/scalar_math.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/thread_pool.h"

namespace loopserve {
namespace {

// Offsets of IterAdaLN's six chunks in a (n, 6D) modulation row.
enum AdaLnChunk { kShiftAttn = 0, kScaleAttn, kGateAttn, kShiftFfn, kScaleFfn, kGateFfn };

const float* Chunk(const float* modulation, AdaLnChunk c, int64_t d_model) {
  return modulation == nullptr ? nullptr : modulation + c * d_model;
}

}  // namespace

LayerForward::LayerForward(const ModelConfig& config, const PagedKvView& kv, ThreadPool* pool)
    : config_(config), kv_(kv), pool_(pool) {}

void LayerForward::Modulation(const IterAdaLnWeights& w, int loop, const float* x, int64_t n,
                              float* out) {
  const int64_t r = config_.iter_adaln_rank;
  float* c = adaln_.Get(n * r);
  Linear(x, n, w.down, c, pool_);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < r; ++j) {
      c[i * r + j] = Silu(c[i * r + j] + w.iter_embed.At(loop, j));
    }
  }
  Linear(c, n, w.up, out, pool_);
  const int64_t six_d = 6 * config_.hidden_size;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < six_d; ++j) out[i * six_d + j] += w.up_bias.At(j);
  }
}

void LayerForward::Qkv(const LayerWeights& w, const float* xn, const LayerRows& rows, float* q,
                       float* k, float* v) {
  const int d = config_.head_dim;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  const float theta = static_cast<float>(config_.rope_theta);
  // One parallel region for the projections (bit-identical to three Linears).
  const LinearTarget qkv[] = {{w.attn.k_proj, k}, {w.attn.v_proj, v}, {w.attn.q_proj, q}};
  LinearFused(xn, rows.n, std::span<const LinearTarget>(qkv, q != nullptr ? 3 : 2), pool_);
  if (config_.qk_norm) {  // per head: rows of d
    if (q != nullptr) RmsNorm(q, rows.n * config_.num_attention_heads, d, w.attn.q_norm, eps, q);
    RmsNorm(k, rows.n * config_.num_key_value_heads, d, w.attn.k_norm, eps, k);
  }
  if (q != nullptr) ApplyRope(q, rows.n, config_.num_attention_heads, d, rows.positions, theta);
  ApplyRope(k, rows.n, config_.num_key_value_heads, d, rows.positions, theta);
}

void LayerForward::KeyValue(const LayerWeights& w, const float* modulation,
                            const LayerRows& rows, const float* x, float* k, float* v) {
  const int64_t d_model = config_.hidden_size;
  float* xn = norm_.Get(rows.n * d_model);
  RmsNorm(x, rows.n, d_model, w.input_layernorm, static_cast<float>(config_.rms_norm_eps), xn);
  if (modulation != nullptr) {
    Modulate(xn, rows.n, d_model, Chunk(modulation, kScaleAttn, d_model),
             Chunk(modulation, kShiftAttn, d_model), 6 * d_model);
  }
  Qkv(w, xn, rows, nullptr, k, v);
}

void LayerForward::Attention(const LayerWeights& w, const KvTarget& target,
                             const float* modulation, const LayerRows& rows, const float* x,
                             float* out) {
  const int64_t d_model = config_.hidden_size;
  const int64_t kv_dim = config_.KvDim();
  const int64_t n = rows.n;
  float* xn = norm_.Get(n * d_model);
  RmsNorm(x, n, d_model, w.input_layernorm, static_cast<float>(config_.rms_norm_eps), xn);
  if (modulation != nullptr) {
    Modulate(xn, n, d_model, Chunk(modulation, kScaleAttn, d_model),
             Chunk(modulation, kShiftAttn, d_model), 6 * d_model);
  }
  float* q = q_.Get(n * config_.QDim());
  float* k = target.is_probe() ? target.probe_k : k_.Get(n * kv_dim);
  float* v = target.is_probe() ? target.probe_v : v_.Get(n * kv_dim);
  Qkv(w, xn, rows, q, k, v);
  if (!target.is_probe()) {
    // Every row's K/V lands in the pool before any row attends, so tokens of
    // one prefill chunk see each other causally.
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(kv_.RowAt(rows.block_tables[i], target.instance, 0, rows.positions[i]),
                  k + i * kv_dim, kv_dim * sizeof(float));
      std::memcpy(kv_.RowAt(rows.block_tables[i], target.instance, 1, rows.positions[i]),
                  v + i * kv_dim, kv_dim * sizeof(float));
    }
  }
  AttentionShape shape{config_.num_attention_heads, config_.num_key_value_heads,
                       config_.head_dim};
  float* attn = attn_.Get(n * config_.QDim());
  PagedAttention(kv_, target.instance, shape, q, n, rows.positions, rows.block_tables,
                 target.is_probe() ? k : nullptr, target.is_probe() ? v : nullptr, attn, pool_);
  Linear(attn, n, w.attn.o_proj, out, pool_);
}

void LayerForward::Run(const LayerWeights& w, const KvTarget& kv, const float* modulation,
                       const LayerRows& rows, float* x, std::vector<int32_t>* router_trace) {
  const int64_t d_model = config_.hidden_size;
  const int64_t n = rows.n;
  if (n == 0) return;
  const int64_t ld = 6 * d_model;
  float* delta = delta_.Get(n * d_model);
  // h = x + (1 + ga) ⊙ Attn(RMSNorm(x) ⊙ (1 + ca) + sa)
  Attention(w, kv, modulation, rows, x, delta);
  ResidualAdd(x, delta, n, d_model, Chunk(modulation, kGateAttn, d_model), ld);
  // y = h + (1 + gf) ⊙ FFN(RMSNorm(h) ⊙ (1 + cf) + sf)
  float* hn = hidden_.Get(n * d_model);
  RmsNorm(x, n, d_model, w.post_attention_layernorm, static_cast<float>(config_.rms_norm_eps),
          hn);
  if (modulation != nullptr) {
    Modulate(hn, n, d_model, Chunk(modulation, kScaleFfn, d_model),
             Chunk(modulation, kShiftFfn, d_model), ld);
  }
  Ffn(w, hn, n, delta, router_trace);
  ResidualAdd(x, delta, n, d_model, Chunk(modulation, kGateFfn, d_model), ld);
}

}  // namespace loopserve

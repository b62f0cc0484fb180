#include "engine/cuda/cuda_layer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/plans/expert_plan.h"

namespace loopserve {
namespace {

// IterAdaLN's six chunks of a (n, 6D) modulation row (as layer_forward.cc).
enum AdaLnChunk { kShiftAttn = 0, kScaleAttn, kGateAttn, kShiftFfn, kScaleFfn, kGateFfn };

const float* Chunk(const float* modulation, int c, int64_t d_model) {
  return modulation == nullptr ? nullptr : modulation + c * d_model;
}

// Grows `buffer` to `count` and yields its data, or returns the Status.
#define RESERVE(buffer, count)                                                         \
  do {                                                                                 \
    if (absl::Status reserve_status = (buffer).Reserve(count); !reserve_status.ok()) { \
      return reserve_status;                                                           \
    }                                                                                  \
  } while (0)

}  // namespace

absl::Status CudaLayer::Linear(const cuda::DeviceMatrix& w, const float* x, int64_t n, float* y) {
  return cuda::Linear(ctx_.blas, ctx_.stream, w, x, n, y, &gemm_input_);
}

absl::Status CudaLayer::NormModulated(const float* x, int64_t n, const float* weight,
                                      const float* modulation, int scale_chunk, int shift_chunk,
                                      float* out) {
  const ModelConfig& c = *ctx_.config;
  const int64_t d_model = c.hidden_size;
  CUDA_RETURN_IF_ERROR(cuda::RmsNorm(x, n, d_model, weight, static_cast<float>(c.rms_norm_eps),
                                     Chunk(modulation, scale_chunk, d_model),
                                     Chunk(modulation, shift_chunk, d_model), 6 * d_model, out,
                                     ctx_.stream));
  return absl::OkStatus();
}

absl::Status CudaLayer::Modulation(const DeviceLayer& w, int loop, const float* x, int64_t n,
                                   float* out) {
  const ModelConfig& c = *ctx_.config;
  const int64_t r = c.iter_adaln_rank;
  RESERVE(adaln_, n * r);
  LOOPSERVE_RETURN_IF_ERROR(Linear(w.adaln_down, x, n, adaln_.data()));
  CUDA_RETURN_IF_ERROR(
      cuda::AddRowSilu(adaln_.data(), n, r, w.iter_embed + int64_t{loop} * r, ctx_.stream));
  LOOPSERVE_RETURN_IF_ERROR(Linear(w.adaln_up, adaln_.data(), n, out));
  CUDA_RETURN_IF_ERROR(cuda::AddBias(out, n, 6 * c.hidden_size, w.adaln_up_bias, ctx_.stream));
  return absl::OkStatus();
}

absl::Status CudaLayer::Qkv(const DeviceLayer& w, const float* xn, const cuda::DeviceRows& rows,
                            float* q, float* k, float* v) {
  const ModelConfig& c = *ctx_.config;
  const int d = c.head_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const float theta = static_cast<float>(c.rope_theta);
  const int64_t n = rows.n;
  if (q != nullptr) LOOPSERVE_RETURN_IF_ERROR(Linear(w.q_proj, xn, n, q));
  LOOPSERVE_RETURN_IF_ERROR(Linear(w.k_proj, xn, n, k));
  LOOPSERVE_RETURN_IF_ERROR(Linear(w.v_proj, xn, n, v));
  if (c.qk_norm) {  // per head: rows of d
    if (q != nullptr) {
      CUDA_RETURN_IF_ERROR(cuda::RmsNorm(q, n * c.num_attention_heads, d, w.q_norm, eps, nullptr,
                                         nullptr, 0, q, ctx_.stream));
    }
    CUDA_RETURN_IF_ERROR(cuda::RmsNorm(k, n * c.num_key_value_heads, d, w.k_norm, eps, nullptr,
                                       nullptr, 0, k, ctx_.stream));
  }
  if (q != nullptr) {
    CUDA_RETURN_IF_ERROR(
        cuda::Rope(q, n, c.num_attention_heads, d, rows.positions, theta, ctx_.stream));
  }
  CUDA_RETURN_IF_ERROR(
      cuda::Rope(k, n, c.num_key_value_heads, d, rows.positions, theta, ctx_.stream));
  return absl::OkStatus();
}

absl::Status CudaLayer::KeyValue(const DeviceLayer& w, const float* modulation,
                                 const cuda::DeviceRows& rows, const float* x, float* k, float* v) {
  RESERVE(norm_, rows.n * ctx_.config->hidden_size);
  LOOPSERVE_RETURN_IF_ERROR(NormModulated(x, rows.n, w.input_layernorm, modulation, kScaleAttn,
                                          kShiftAttn, norm_.data()));
  return Qkv(w, norm_.data(), rows, nullptr, k, v);
}

absl::Status CudaLayer::Attention(const DeviceLayer& w, const CudaKvTarget& target,
                                  const float* modulation, const cuda::DeviceRows& rows,
                                  const float* x, float* out) {
  const ModelConfig& c = *ctx_.config;
  const int64_t n = rows.n, kv_dim = c.KvDim();
  RESERVE(norm_, n * c.hidden_size);
  RESERVE(q_, n * c.QDim());
  RESERVE(attn_, n * c.QDim());
  RESERVE(k_, n * kv_dim);
  RESERVE(v_, n * kv_dim);
  LOOPSERVE_RETURN_IF_ERROR(
      NormModulated(x, n, w.input_layernorm, modulation, kScaleAttn, kShiftAttn, norm_.data()));
  float* k = target.is_probe() ? target.probe_k : k_.data();
  float* v = target.is_probe() ? target.probe_v : v_.data();
  LOOPSERVE_RETURN_IF_ERROR(Qkv(w, norm_.data(), rows, q_.data(), k, v));
  if (!target.is_probe()) {
    // Every row's K/V is in the pool before any row attends (stream order),
    // so the tokens of one prefill chunk see each other causally.
    CUDA_RETURN_IF_ERROR(cuda::WriteKv(ctx_.pool, target.instance, rows, k, v, ctx_.stream));
  }
  CUDA_RETURN_IF_ERROR(
      cuda::PagedAttention(ctx_.pool, target.instance, c.num_attention_heads, c.num_key_value_heads,
                           c.head_dim, q_.data(), rows, target.is_probe() ? k : nullptr,
                           target.is_probe() ? v : nullptr, attn_.data(), ctx_.stream));
  return Linear(w.o_proj, attn_.data(), n, out);
}

absl::Status CudaLayer::SwiGlu(const DeviceSwiGlu& w, const float* x, int64_t n, float* out) {
  const int64_t width = w.gate.rows;
  RESERVE(ffn_a_, n * width);
  RESERVE(ffn_b_, n * width);
  LOOPSERVE_RETURN_IF_ERROR(Linear(w.gate, x, n, ffn_a_.data()));
  LOOPSERVE_RETURN_IF_ERROR(Linear(w.up, x, n, ffn_b_.data()));
  CUDA_RETURN_IF_ERROR(
      cuda::SiluMul(ffn_a_.data(), ffn_b_.data(), n * width, ffn_a_.data(), ctx_.stream));
  return Linear(w.down, ffn_a_.data(), n, out);
}

absl::Status CudaLayer::Ffn(const DeviceLayer& w, const float* x, int64_t n, float* out,
                            std::vector<int32_t>* router_trace) {
  const ModelConfig& c = *ctx_.config;
  const int64_t d_model = c.hidden_size;
  if (w.ffn == FfnKind::kDense) return SwiGlu(w.dense, x, n, out);
  const int num_experts = c.num_experts, k = c.num_experts_per_tok;
  const int64_t pairs = n * k;
  RESERVE(router_logits_, n * num_experts);
  RESERVE(expert_ids_, pairs);
  RESERVE(expert_weights_, pairs);
  LOOPSERVE_RETURN_IF_ERROR(Linear(w.router, x, n, router_logits_.data()));
  CUDA_RETURN_IF_ERROR(cuda::RouteTopK(router_logits_.data(), n, num_experts, k,
                                       c.router_score == RouterScore::kSoftmax, c.norm_topk_prob,
                                       static_cast<float>(c.routed_scaling_factor),
                                       expert_ids_.data(), expert_weights_.data(), ctx_.stream));
  // The group sizes decide the per-expert GEMM shapes, which cuBLAS takes
  // from the host: one small copy and sync per MoE layer.
  host_ids_.resize(pairs);
  LOOPSERVE_RETURN_IF_ERROR(expert_ids_.CopyToHost(host_ids_.data(), pairs, ctx_.stream));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(ctx_.stream));
  if (router_trace != nullptr) router_trace->assign(host_ids_.begin(), host_ids_.end());
  const cuda::ExpertPlan plan = cuda::BuildExpertPlan(host_ids_.data(), n, k, num_experts);
  // Sized once for the largest expert group and the shared experts, so no
  // buffer is reallocated between the expert GEMMs.
  RESERVE(ffn_a_, pairs * c.moe_intermediate_size);
  RESERVE(ffn_b_, pairs * c.moe_intermediate_size);
  RESERVE(plan_token_, pairs);
  RESERVE(plan_inverse_, pairs);
  RESERVE(gathered_, pairs * d_model);
  RESERVE(expert_out_, pairs * d_model);
  LOOPSERVE_RETURN_IF_ERROR(plan_token_.CopyFromHost(plan.token.data(), pairs, ctx_.stream));
  LOOPSERVE_RETURN_IF_ERROR(plan_inverse_.CopyFromHost(plan.inverse.data(), pairs, ctx_.stream));
  CUDA_RETURN_IF_ERROR(
      cuda::GatherRows(x, plan_token_.data(), pairs, d_model, gathered_.data(), ctx_.stream));
  // One GEMM chain per expert with rows: the batched/grouped GEMM that
  // would remove the host sync is future work (docs/cuda.md).
  for (int e = 0; e < num_experts; ++e) {
    const int64_t begin = plan.offsets[e], count = plan.GroupSize(e);
    if (count == 0) continue;
    LOOPSERVE_RETURN_IF_ERROR(SwiGlu(w.experts[e], gathered_.data() + begin * d_model, count,
                                     expert_out_.data() + begin * d_model));
  }
  CUDA_RETURN_IF_ERROR(cuda::CombineExperts(expert_out_.data(), plan_inverse_.data(),
                                            expert_weights_.data(), n, k, d_model, out,
                                            ctx_.stream));
  if (!w.shared.empty()) {
    RESERVE(shared_out_, n * d_model);
    for (const DeviceSwiGlu& shared : w.shared) {
      LOOPSERVE_RETURN_IF_ERROR(SwiGlu(shared, x, n, shared_out_.data()));
      CUDA_RETURN_IF_ERROR(cuda::AddInPlace(out, shared_out_.data(), n * d_model, ctx_.stream));
    }
  }
  return absl::OkStatus();
}

absl::Status CudaLayer::Run(const DeviceLayer& w, const CudaKvTarget& kv, const float* modulation,
                            const cuda::DeviceRows& rows, float* x,
                            std::vector<int32_t>* router_trace) {
  const int64_t d_model = ctx_.config->hidden_size, n = rows.n;
  if (n == 0) return absl::OkStatus();
  RESERVE(delta_, n * d_model);
  RESERVE(hidden_, n * d_model);
  // h = x + (1 + ga) ⊙ Attn(RMSNorm(x) ⊙ (1 + ca) + sa)
  LOOPSERVE_RETURN_IF_ERROR(Attention(w, kv, modulation, rows, x, delta_.data()));
  CUDA_RETURN_IF_ERROR(cuda::ResidualAdd(x, delta_.data(), n, d_model,
                                         Chunk(modulation, kGateAttn, d_model), 6 * d_model,
                                         ctx_.stream));
  // y = h + (1 + gf) ⊙ FFN(RMSNorm(h) ⊙ (1 + cf) + sf)
  LOOPSERVE_RETURN_IF_ERROR(NormModulated(x, n, w.post_attention_layernorm, modulation, kScaleFfn,
                                          kShiftFfn, hidden_.data()));
  LOOPSERVE_RETURN_IF_ERROR(Ffn(w, hidden_.data(), n, delta_.data(), router_trace));
  CUDA_RETURN_IF_ERROR(cuda::ResidualAdd(x, delta_.data(), n, d_model,
                                         Chunk(modulation, kGateFfn, d_model), 6 * d_model,
                                         ctx_.stream));
  return absl::OkStatus();
}

}  // namespace loopserve
